"""The small tokenizer surface generation and evaluation need, and adapters onto real tokenizers.

`TextTokenizer` is what `LocalGenerator` and `LocalScorer` call. `load_text_tokenizer` wraps
`langshift.tokenization.load_tokenizer` and adds the end-of-turn ids a checkpoint stops on, which
may be several (Llama-3-Instruct: `<|end_of_text|>` and `<|eot_id|>` from generation_config.json).
"""

from __future__ import annotations

import json
import os
from typing import Protocol, Sequence

from langshift.tokenization.tokenizer import load_tokenizer


class TextTokenizer(Protocol):
  bos_id: int | None
  eos_ids: tuple[int, ...]  # generation stops on any of these
  chat_template: str | None
  special_tokens_map: dict[str, str]  # jinja variables of the chat template (bos_token, ...)

  def encode(self, text: str) -> list[int]:
    """Token ids of `text`, adding no BOS/EOS (special-token strings in it are parsed)."""

  def decode(self, ids: Sequence[int]) -> str:
    """Text of `ids` with special tokens dropped."""


class TokenizerAdapter:
  """Wraps a `langshift.tokenization.Tokenizer`, or a `tokenizers.Tokenizer` given its specials."""

  def __init__(self, tokenizer, *, eos_ids: Sequence[int] = (), chat_template: str | None = None,
               special_tokens_map: dict[str, str] | None = None):
    self._tok = tokenizer
    self.special_tokens_map = dict(special_tokens_map if special_tokens_map is not None
                                   else getattr(tokenizer, "special_tokens_map", {}))
    self.chat_template = chat_template or getattr(tokenizer, "chat_template", None)
    self.bos_id = self._id(self.special_tokens_map.get("bos_token"))
    eos = [self._id(self.special_tokens_map.get("eos_token"))] + list(eos_ids)
    self.eos_ids = tuple(dict.fromkeys(int(i) for i in eos if i is not None))

  def _id(self, token):
    return None if token is None else self._tok.token_to_id(token)

  def encode(self, text):
    out = self._tok.encode(text, add_special_tokens=False)
    return list(getattr(out, "ids", out))  # tokenizers.Encoding or a plain list

  def decode(self, ids):
    return self._tok.decode(list(ids), skip_special_tokens=True)


def load_text_tokenizer(model_dir: str) -> TokenizerAdapter:
  """A checkpoint directory's tokenizer, stopping on every EOS id its generation config names."""
  gen_config = os.path.join(model_dir, "generation_config.json")
  eos: list[int] = []
  if os.path.exists(gen_config):
    with open(gen_config, encoding="utf-8") as f:
      value = json.load(f).get("eos_token_id")
    eos = list(value) if isinstance(value, list) else [] if value is None else [value]
  return TokenizerAdapter(load_tokenizer(model_dir), eos_ids=eos)
