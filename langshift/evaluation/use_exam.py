"""Scoring of USE (the Russian Unified State Exam in Russian language, MERA's `use` task, as
Darumeru runs it; Fenogenova et al. 2024, "MERA", arXiv:2401.04531).

Each answer earns exam points by its task type: `text` answers (a word) score 1 when the letters
of the prediction are one of the accepted spellings; `matching` answers (comma-separated numbers)
score a point per position that matches; `multiple_choice` answers score 1 for exactly the right
set of options, except task 16, which scores the right options minus the wrong ones. A variant's
points are summed and divided by the exam's maximum (34); `grade_norm` is the mean over variants.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

MAX_GRADE_POINTS = 34


def _items(text: str) -> list[str]:
  return [p.strip() for p in text.split(",")]


def text_score(answer: str, prediction: str) -> int:
  letters = "".join(c for c in prediction if c.isalpha() or c == "_").lower()
  return int(letters in answer.split(","))


def matching_score(answer: str, prediction: str) -> int:
  pred, gold = _items(prediction), answer.split(",")
  if len(pred) != len(gold):
    return 0
  return sum(p == g for p, g in zip(pred, gold))


def multiple_choice_score(answer: str, prediction: str, task_16: bool = False) -> int:
  pred, gold = _items(prediction), answer.split(",")
  if task_16:
    pred += ["-1"] * (len(gold) - len(pred))
    return max(0, len(set(gold) & set(pred)) - len(pred) + len(gold))
  return int(len(set(gold) & set(pred)) == len(set(gold)) == len(set(pred)))


def points(meta: dict, answer: str, prediction: str) -> int:
  """Exam points of one answer; `meta` holds the record's `type` and `id_task`."""
  kind = meta.get("type")
  if kind == "text":
    return text_score(answer, prediction)
  if kind == "matching":
    return matching_score(answer, prediction)
  return multiple_choice_score(answer, prediction, task_16=str(meta.get("id_task")) == "16")


def grade_norm(outputs: Sequence[str], examples: Sequence) -> float:
  """Mean over exam variants of (points / 34); examples carry `meta` with `variant`."""
  per_variant: dict = collections.defaultdict(float)
  for output, example in zip(outputs, examples):
    meta = example.meta or {}
    if "variant" not in meta:
      raise ValueError(f"USE example {example.id!r}: meta has no 'variant' to group answers by")
    per_variant[meta["variant"]] += points(meta, example.target, output.strip())
  return sum(p / MAX_GRADE_POINTS for p in per_variant.values()) / max(len(per_variant), 1)
