"""Non-instructional fine-tuning data (Xie, Syu & Lee 2024, "Non-instructional Fine-tuning:
Enabling Instruction-Following Capabilities in Pre-trained Language Models without
Instruction-Following Data", arXiv:2409.00096).

A web document is split at its midpoint; a teacher continues the first half (generation lives in
`langshift.generation`); the pair (user: first half, assistant: continuation) is then trained on
with loss on the assistant span (`source_config(template="pair")`).
"""

from __future__ import annotations

from collections.abc import Sequence

from langshift.data import formatting


def midpoint_split(text: str, offsets: Sequence[tuple[int, int]]) -> tuple[str, str]:
  """Splits `text` near its middle token at a word boundary.

  The unit is open in the paper; here it is tokens of the student tokenizer (`offsets` are the
  student's character offsets of `text`). The cut moves to the whitespace nearest the middle
  token's start; text without any whitespace (e.g. Chinese) is cut at that token boundary.
  Returns (first half, second half), whitespace at the cut removed from both.
  """
  if not offsets:
    return text, ""
  middle = offsets[len(offsets) // 2][0]
  spaces = [i for i, c in enumerate(text) if c.isspace()]
  cut = min(spaces, key=lambda i: (abs(i - middle), i)) if spaces else middle
  return text[:cut].rstrip(), text[cut:].lstrip()


def split_documents(texts: Sequence[str], tokenizer) -> list[dict[str, str]]:
  """`{"prompt": first half, "reference": second half}` per document (batched tokenization)."""
  encoded = tokenizer.encode_batch_with_offsets(list(texts))
  out = []
  for text, (_, offsets) in zip(texts, encoded):
    first, second = midpoint_split(text, offsets)
    out.append({"prompt": first, "reference": second})
  return out


def build_pair(first_half: str, continuation: str) -> dict[str, object]:
  """A training record for `template="chat"`: the first half asks, the continuation answers."""
  return {"messages": formatting.pair_messages(first_half, continuation)}
