"""Tiny tokenizers of the published models' vocabulary families, trained in-process on
`texts.training_text()` with the `tokenizers` and `sentencepiece` libraries.

  llama3   byte-level BPE with Llama-3's special tokens (`<|begin_of_text|>` added in front,
           `<|eot_id|>`, `<|start_header_id|>`...); the instruct one carries Llama-3's chat
           template and ends turns with `<|eot_id|>`, the base one has no template
  mistral  SentencePiece BPE with byte fallback (`<s>`, `</s>`, `<unk>`; `[INST]` is text), as
           Mistral-7B-v0.1 base: no chat template
  smollm2  byte-level BPE with ChatML (`<|im_start|>` its BOS, `<|im_end|>` its EOS and pad), as
           SmolLM2-Instruct, with the ChatML template
  qwen     the same ChatML vocabulary with no BOS token and `<|endoftext|>` as pad, as Qwen1.5-Chat
"""

from __future__ import annotations

import io
import json
import os

from langshift.rehearsal import texts
from langshift.tokenization import sentencepiece_export
from langshift.tokenization.chat_templates import BUILTIN_TEMPLATES
from langshift.tokenization.tokenizer_files import write_tokenizer_dir

VOCAB_SIZE = 512
LLAMA3_SPECIALS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|reserved_special_token_2|>",
    "<|eot_id|>",
)
CHATML_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
KINDS = ("llama3", "mistral", "smollm2", "qwen")


def _byte_level_bpe(specials, bos: str | None) -> dict:
  # pylint: disable=import-outside-toplevel
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
      vocab_size=VOCAB_SIZE,
      special_tokens=list(specials),
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
      show_progress=False,
  )
  tok.train_from_iterator(texts.training_text(), trainer)
  if bos is not None:
    bos_id = tok.token_to_id(bos)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)]
    )
  else:
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
  return json.loads(tok.to_str())


def write_tokenizer(kind: str, directory: str, *, chat: bool) -> str:
  """A tokenizer directory of family `kind`; `chat`: an instruct model's (with its template)."""
  if kind == "llama3":
    write_tokenizer_dir(
        directory,
        _byte_level_bpe(LLAMA3_SPECIALS, bos="<|begin_of_text|>"),
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>" if chat else "<|end_of_text|>",
        chat_template=BUILTIN_TEMPLATES["llama3"] if chat else None,
        model_max_length=8192,
    )
  elif kind in ("smollm2", "qwen"):
    smollm2 = kind == "smollm2"
    write_tokenizer_dir(
        directory,
        _byte_level_bpe(CHATML_SPECIALS, bos=None),
        bos_token="<|im_start|>" if smollm2 else None,
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>" if smollm2 else None,
        pad_token="<|im_end|>" if smollm2 else "<|endoftext|>",
        chat_template=BUILTIN_TEMPLATES["chatml"] if chat else None,
        model_max_length=8192,
    )
  elif kind == "mistral":
    if chat:
      raise ValueError("mistral: only the base model's tokenizer (Mistral-7B-v0.1) is rehearsed")
    _write_sentencepiece(directory)
  else:
    raise ValueError(f"tokenizer kind {kind!r}; expected one of {KINDS}")
  return directory


def _write_sentencepiece(directory: str) -> None:
  import sentencepiece as spm  # pylint: disable=import-outside-toplevel

  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(texts.training_text()),
      model_writer=model,
      vocab_size=VOCAB_SIZE,
      model_type="bpe",
      byte_fallback=True,
      split_digits=True,
      character_coverage=1.0,
      minloglevel=2,
      remove_extra_whitespaces=False,
      normalization_rule_name="identity",
      unk_id=0,
      bos_id=1,
      eos_id=2,
  )
  os.makedirs(directory, exist_ok=True)
  write_tokenizer_dir(
      directory,
      sentencepiece_export.sentencepiece_to_tokenizer_json(model.getvalue()),
      bos_token="<s>",
      eos_token="</s>",
      unk_token="<unk>",
      model_max_length=32768,
      add_bos_token=True,
  )
  with open(os.path.join(directory, "tokenizer.model"), "wb") as f:
    f.write(model.getvalue())
