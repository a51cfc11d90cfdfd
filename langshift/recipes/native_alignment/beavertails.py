"""Safety prompts in the BeaverTails layouts (Ji et al. 2023, "BeaverTails: Towards Improved
Safety Alignment of LLM via a Human-Preference Dataset", arXiv:2307.04657), or Arabic translations
of them, for the harmlessness / helpfulness judge in `safety_judge.py`.

Two published layouts are read (JSON lines, possibly .gz / .xz, CSV, JSON or Parquet):

- PKU-Alignment/BeaverTails (round0/30k/{train,test}.jsonl.gz, 330k alike): question-answer pairs
  `prompt`, `response`, `category` (a dict of 14 harm categories to booleans), `is_safe`. A prompt
  appears once per answer; prompts are de-duplicated, their flagged categories merged, and
  `is_safe` is False when any answer to the prompt was labelled unsafe.
- PKU-Alignment/BeaverTails-Evaluation: `prompt`, `category` (one name), `category_id`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

from langshift.evaluation.benchmarks.tables import (
    format_error,
    is_empty,
    list_tables,
    read_rows,
    text_field,
)


@dataclasses.dataclass(frozen=True)
class SafetyPrompt:
  prompt: str
  categories: tuple[str, ...] = ()
  is_safe: bool | None = None  # None: the file does not say
  id: Any = None


def _categories(value: Any, where: str) -> tuple[str, ...]:
  if is_empty(value):
    return ()
  if isinstance(value, dict):  # BeaverTails QA: {category: flagged}
    return tuple(str(k) for k, flagged in value.items() if flagged)
  if isinstance(value, str):
    return (value.strip(),)
  if isinstance(value, (list, tuple)):
    return tuple(str(v).strip() for v in value if not is_empty(v))
  raise format_error(where, f"field 'category' has type {type(value).__name__}")


def _is_safe(value: Any, where: str) -> bool | None:
  if is_empty(value):
    return None
  if isinstance(value, bool) or value in (0, 1):
    return bool(value)
  text = str(value).strip().lower()
  if text in ("true", "false"):
    return text == "true"
  raise format_error(where, f"field 'is_safe' is {value!r}; expected true or false")


def _merge(first: SafetyPrompt, other: SafetyPrompt) -> SafetyPrompt:
  categories = tuple(dict.fromkeys(first.categories + other.categories))
  flags = [f for f in (first.is_safe, other.is_safe) if f is not None]
  return dataclasses.replace(first, categories=categories, is_safe=all(flags) if flags else None)


def load_safety_prompts(
    path: str | Sequence[str],
    *,
    harmful_only: bool = False,
    max_prompts: int | None = None,
) -> list[SafetyPrompt]:
  """Distinct prompts of one or more files / directories, in file order.

  `harmful_only` keeps prompts labelled unsafe (`is_safe` False); `max_prompts` caps the result.
  A row without a `prompt` fails with a one-line error naming the file and line.
  """
  files = []
  for p in [path] if isinstance(path, str) else path:
    if os.path.isdir(p):
      files += list_tables(p)
    elif os.path.isfile(p):
      files.append(p)
    else:
      raise FileNotFoundError(f"safety prompts: no such file or directory: {p}")
  prompts: dict[str, SafetyPrompt] = {}
  for file in files:
    for where, row in read_rows(file):
      item = SafetyPrompt(
          prompt=text_field(row, where, "prompt"),
          categories=_categories(row.get("category"), where),
          is_safe=_is_safe(row.get("is_safe"), where),
          id=row.get("id", row.get("category_id")),
      )
      seen = prompts.get(item.prompt)
      prompts[item.prompt] = _merge(seen, item) if seen else item
  out = [p for p in prompts.values() if not harmful_only or p.is_safe is False]
  if not out:
    raise ValueError(f"safety prompts: none{' labelled unsafe' * harmful_only} in {path}")
  return out[:max_prompts] if max_prompts is not None else out
