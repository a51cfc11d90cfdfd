"""Non-instructional fine-tuning data (Xie, Syu & Lee 2024, "Non-instructional Fine-tuning:
Enabling Instruction-Following Capabilities in Pre-trained Language Models without
Instruction-Following Data", arXiv:2409.00096).

A web document is split at its midpoint; a teacher continues the first half (generation lives in
`langshift.generation`); the pair (user: first half, assistant: continuation) is then trained on
with loss on the assistant span (`source_config(template="pair")`).
"""

from __future__ import annotations

import re
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


SPLIT_UNITS = ("token", "word", "char")

# The teacher's request (the paper asks GPT-3.5/4 to continue the first half and gives no exact
# wording, so this minimal one is langshift's; `noninstruct.continue_prompt` overrides it).
CONTINUE_PROMPT = (
    "Continue the following text. Write only the continuation, without repeating the text or "
    "commenting on it.\n\n{text}"
)


def unit_offsets(texts: Sequence[str], unit: str, tokenizer=None) -> list[list[tuple[int, int]]]:
  """Character offsets of each text's split units: student tokens, whitespace words or chars."""
  if unit == "token":
    return [offsets for _, offsets in tokenizer.encode_batch_with_offsets(list(texts))]
  if unit == "word":
    return [[m.span() for m in re.finditer(r"\S+", t)] for t in texts]
  if unit == "char":
    return [[(i, i + 1) for i in range(len(t))] for t in texts]
  raise ValueError(f"split unit {unit!r}; expected one of {SPLIT_UNITS}")


def truncate(text: str, offsets: Sequence[tuple[int, int]], max_units: int) -> str:
  """`text` cut after its first `max_units` units, moved back to the last whitespace before
  that point when there is one (a token may end inside a word)."""
  if len(offsets) <= max_units:
    return text
  end = offsets[max_units - 1][1]
  space = max((i for i in range(end, 0, -1) if text[i].isspace()), default=None)
  return text[: space if space else end].rstrip()


def split_documents(
    texts: Sequence[str], tokenizer=None, *, unit: str = "token", min_units: int = 0
) -> list[dict[str, str] | None]:
  """`{"prompt": first half, "reference": second half, "units": n}` per document, or None for a
  document of fewer than `min_units` units (too short to split into a prompt and an answer)."""
  out: list[dict[str, str] | None] = []
  for text, offsets in zip(texts, unit_offsets(texts, unit, tokenizer)):
    if len(offsets) < max(min_units, 2):
      out.append(None)
      continue
    first, second = midpoint_split(text, offsets)
    out.append({"prompt": first, "reference": second, "units": len(offsets)})
  return out


def continuation_messages(first_half: str, prompt: str = CONTINUE_PROMPT) -> list[dict[str, str]]:
  """The teacher's conversation: one user turn asking for the continuation of `first_half`."""
  return [{"role": "user", "content": prompt.format(text=first_half)}]


def join_continuations(
    outputs: Sequence[dict], *, output_field: str = "completion"
) -> tuple[list[dict[str, str]], list[str]]:
  """Generation-job outputs -> pair records `{"id", "prompt", "response"}` (the fields of
  `source_config(template="pair")`): the job writes the teacher's text to `output_field`
  ("completion" by default) and the record carries the first half in `first_half`. Returns
  (pairs, ids of empty continuations), the latter left out."""
  pairs, empty = [], []
  for o in outputs:
    response = (o.get(output_field) or "").strip()
    if not response:
      empty.append(o["id"])
      continue
    pairs.append({"id": o["id"], "prompt": o["first_half"], "response": response})
  return pairs, empty


def build_pair(first_half: str, continuation: str) -> dict[str, object]:
  """A training record for `template="chat"`: the first half asks, the continuation answers."""
  return {"messages": formatting.pair_messages(first_half, continuation)}
