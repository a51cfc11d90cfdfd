"""Reading and writing tokenizers as files: `tokenizer.json`, SentencePiece `.model`, HF dirs.

Works on plain `tokenizer.json` dicts so that vocabulary surgery stays a function from dict to
dict; `transformers` is not needed to write a directory it can load.
"""

from __future__ import annotations

import json
import os
from typing import Any

from tokenizers import Tokenizer

from langshift.tokenization import sentencepiece_export, tokenizer_metadata
from langshift.tokenization.tokenizer_metadata import (
    CHAT_TEMPLATE_DIR,
    CHAT_TEMPLATE_FILE,
    DEFAULT_TEMPLATE,
    SPECIAL_TOKENS_MAP,
    TOKENIZER_CONFIG,
    read_tokenizer_metadata,
)

TOKENIZER_JSON = "tokenizer.json"
SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token")


def read_tokenizer_json(path: str) -> dict:
  """`path`: a tokenizer.json, a directory holding one, or a SentencePiece .model file."""
  if os.path.isdir(path):
    path = os.path.join(path, TOKENIZER_JSON)
  if path.endswith(".json"):
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  with open(path, "rb") as f:
    return sentencepiece_export.sentencepiece_to_tokenizer_json(f.read())


def model_token_ids(tokenizer_json: dict) -> dict[str, int]:
  """The model's own tokens -> ids (added tokens excluded). BPE/WordPiece store a {token: id}
  dict; Unigram a list of [piece, score] pairs in id order."""
  vocab = tokenizer_json["model"].get("vocab", {})
  if isinstance(vocab, list):
    return {piece: i for i, (piece, _) in enumerate(vocab)}
  return dict(vocab)


def to_tokenizer(tokenizer: Tokenizer | dict | str) -> Tokenizer:
  if isinstance(tokenizer, Tokenizer):
    return tokenizer
  if isinstance(tokenizer, str):
    tokenizer = read_tokenizer_json(tokenizer)
  return Tokenizer.from_str(json.dumps(tokenizer, ensure_ascii=False))


def read_tokenizer_config(directory: str) -> dict:
  """tokenizer_config.json with the special tokens and chat template the directory resolves to
  (`read_tokenizer_metadata`: the ones `load_tokenizer` and transformers use).

  Named special tokens are strings; `chat_template` is the default template's string, or the
  list of named templates when there are several (what `write_tokenizer_dir` writes back).
  """
  metadata = read_tokenizer_metadata(directory)
  config = {**metadata.config, **metadata.special_tokens_map}
  config.pop("chat_template", None)
  if metadata.chat_template_field is not None:
    config["chat_template"] = metadata.chat_template_field
  return config


def write_chat_template(directory: str, template: str) -> None:
  """Makes `template` the default chat template of the tokenizer files in `directory`, as
  transformers saves one: `chat_template.jinja`, the directory's other named templates as
  `additional_chat_templates/NAME.jinja`, and no `chat_template` field left in
  tokenizer_config.json (the files take priority over it; see `tokenizer_metadata`)."""
  templates = {**read_tokenizer_metadata(directory).chat_templates, DEFAULT_TEMPLATE: template}
  for name, source in templates.items():
    if name == DEFAULT_TEMPLATE:
      path = os.path.join(directory, CHAT_TEMPLATE_FILE)
    else:
      os.makedirs(os.path.join(directory, CHAT_TEMPLATE_DIR), exist_ok=True)
      path = os.path.join(directory, CHAT_TEMPLATE_DIR, f"{name}.jinja")
    with open(path, "w", encoding="utf-8") as f:
      f.write(source)
  config_path = os.path.join(directory, TOKENIZER_CONFIG)
  if os.path.exists(config_path):
    with open(config_path, encoding="utf-8") as f:
      config = json.load(f)
    if config.pop("chat_template", None) is not None:
      with open(config_path, "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=2)


# Kept here too: the surgery code (adaptation.py, recipes/lep/inputs.py, ...) imports it from
# this module.
special_token_content = tokenizer_metadata.special_token_content


def write_tokenizer_dir(
    directory: str,
    tokenizer_json: dict,
    *,
    bos_token: str | None = None,
    eos_token: str | None = None,
    unk_token: str | None = None,
    pad_token: str | None = None,
    chat_template: str | list[dict[str, str]] | None = None,
    model_max_length: int | None = None,
    add_bos_token: bool | None = None,
) -> None:
  """Writes a directory `transformers.AutoTokenizer.from_pretrained` loads as a fast tokenizer.

  `chat_template`: a string, or a list of `{"name": ..., "template": ...}` (kept as given).
  """
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, TOKENIZER_JSON), "w", encoding="utf-8") as f:
    json.dump(tokenizer_json, f, ensure_ascii=False, indent=2)
  specials = {
      k: v
      for k, v in zip(SPECIAL_TOKEN_KEYS, (bos_token, eos_token, unk_token, pad_token))
      if v is not None
  }
  config: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast", **specials}
  if chat_template is not None:
    config["chat_template"] = chat_template
  if model_max_length is not None:
    config["model_max_length"] = model_max_length
  if add_bos_token is not None:
    config["add_bos_token"] = add_bos_token
  with open(os.path.join(directory, TOKENIZER_CONFIG), "w", encoding="utf-8") as f:
    json.dump(config, f, ensure_ascii=False, indent=2)
  with open(os.path.join(directory, SPECIAL_TOKENS_MAP), "w", encoding="utf-8") as f:
    json.dump(specials, f, ensure_ascii=False, indent=2)
