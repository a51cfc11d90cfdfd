"""How many optimizer steps one epoch of a chat file takes: the SFT stages of the recipes train
for whole epochs (the pinch mixture, LEP's calibration answers), and the engine counts steps.

An epoch is the rows next-fit (greedy) packing makes of the file's rendered conversations (the
engine's `packing="greedy"`), divided by the global batch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence


def packed_rows(lengths: Sequence[int], seq_len: int, overlong: str) -> int:
  """Rows of next-fit packing of examples of these token lengths; an example longer than a row
  is cut into rows of `seq_len` (`overlong="split"`) or keeps its first row ("truncate")."""
  rows, free = 0, 0
  for n in lengths:
    pieces = [seq_len] * (n // seq_len) + ([n % seq_len] if n % seq_len else [])
    if overlong == "truncate":
      pieces = pieces[:1]
    for piece in pieces:
      if piece > free:
        rows, free = rows + 1, seq_len
      free -= piece
  return rows


def epoch_steps(config, path: str, epochs: float) -> tuple[int, int]:
  """(train steps for `epochs` passes over the chat records of the JSONL file `path` — their
  `messages`, rendered with the config's chat template and tokenizer — and their tokens)."""
  # pylint: disable=import-outside-toplevel
  from langshift.tokenization import chat_templates
  from langshift.tokenization.tokenizer import load_tokenizer

  tokenizer = load_tokenizer(config.tokenizer or config.init_from_hf)
  template = chat_templates.resolve_chat_template(
      config.data.chat_template, tokenizer.chat_template
  )
  with open(path, encoding="utf-8") as f:
    records = [json.loads(line) for line in f if line.strip()]
  special = dict(getattr(tokenizer, "special_tokens_map", None) or {})
  texts = [
      chat_templates.render_chat(r["messages"], template, special_tokens_map=special)
      for r in records
  ]
  lengths = [len(tokenizer.encode(t)) for t in texts]
  rows = packed_rows(lengths, config.train.seq_len, config.data.overlong)
  return max(1, math.ceil(epochs * rows / config.train.global_batch_size)), sum(lengths)
