"""What the LEP stages read: training text, tokenizer files, checkpoint dtypes, embedding rows.

Kept apart from the stage logic in `recipe.py`; each function reads one kind of input.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from langshift.checkpoints import hf_config
from langshift.checkpoints.param_mapping import tensor_mappings
from langshift.checkpoints.safetensors_io import SafetensorsCheckpoint
from langshift.data import config as data_config_lib
from langshift.data import sources as sources_lib
from langshift.tokenization.tokenizer_files import (
    SPECIAL_TOKEN_KEYS,
    model_token_ids,
    read_tokenizer_json,
)
from langshift.tokenization.tokenizer_metadata import read_tokenizer_metadata
from langshift.tokenization.vocabulary import tokenizer_kind

# What a SentencePiece model trained from scratch (bpe/unigram variants) calls its specials.
SENTENCEPIECE_SPECIALS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


def corpus_texts(data_config, max_texts: int) -> list[str]:
  """Non-blank lines of the text field of every record of `data_config`'s sources, in order.

  Lines, not documents: SentencePiece drops samples longer than its max_sentence_length, and
  LEP trains on paragraphs.
  """
  texts: list[str] = []
  for src in data_config_lib.validate_data_config(data_config):
    for text in _source_texts(src, data_config.on_bad_record):
      texts += [line for line in text.split("\n") if line.strip()]
      if len(texts) >= max_texts:
        return texts[:max_texts]
  if not texts:
    raise ValueError("the data sources hold no text to train the tokenizer on")
  return texts


def _source_texts(src, on_bad_record: str) -> Iterator[str]:
  records = sources_lib.open_source(src, on_bad_record)
  for i in range(len(records)):
    _, record = records[i]
    text = None if record is None else record.get(src.text_field)
    if isinstance(text, str):
      yield text


def tokenizer_source(model_dir: str) -> str:
  """The file the tokenizer functions read for a model directory: its byte-level BPE
  tokenizer.json, else its SentencePiece `tokenizer.model` (Mistral is extended through it)."""
  json_path = os.path.join(model_dir, "tokenizer.json")
  model_path = os.path.join(model_dir, "tokenizer.model")
  if os.path.exists(json_path) and (
      not os.path.exists(model_path)
      or tokenizer_kind(read_tokenizer_json(json_path)) == "byte_level"
  ):
    return model_dir
  if os.path.exists(model_path):
    return model_path
  raise FileNotFoundError(f"{model_dir}: neither tokenizer.json nor tokenizer.model found")


def special_token_strings(model_dir: str) -> dict[str, str]:
  """{'bos_token': '<|begin_of_text|>', ...} as the model's tokenizer files name them (the strings
  `load_tokenizer` and transformers resolve)."""
  names = read_tokenizer_metadata(model_dir).special_tokens_map
  return {k: names[k] for k in SPECIAL_TOKEN_KEYS if k in names}


def special_token_ids(tokenizer_json: dict, names: dict[str, str]) -> dict[str, int]:
  """Ids of the named special tokens that the tokenizer has (model vocab or added tokens)."""
  by_content = model_token_ids(tokenizer_json)
  by_content.update({t["content"]: t["id"] for t in tokenizer_json.get("added_tokens", [])})
  return {k: by_content[v] for k, v in names.items() if v in by_content}


def checkpoint_dtype(model_dir: str) -> str:
  """The dtype the weights are stored in: loading and exporting in it keeps them bit-exact."""
  hf = hf_config.read_hf_config(model_dir)
  return str(hf.get("torch_dtype") or hf.get("dtype") or "float32")


def hf_embedding_params(model_dir: str) -> dict[str, Any]:
  """The embedding leaves of an HF checkpoint as a langshift param tree (lm_head/kernel is
  [embed, vocab]). Propagation needs nothing else from the base and the donor, so their
  transformer blocks are never read."""
  cfg = hf_config.model_config_from_hf(
      hf_config.read_hf_config(model_dir), source=os.path.join(model_dir, "config.json")
  )
  ckpt = SafetensorsCheckpoint(model_dir)
  tree: dict[str, Any] = {}
  for m in tensor_mappings(cfg):
    if m.path[0] in ("embed_tokens", "lm_head"):
      tree[m.path[0]] = {m.path[1]: m.to_ours(np.asarray(ckpt.get(m.hf_name)))}
  return tree
