"""JSON-lines files, the layout of every record file langshift writes and reads (corpora, prompt
sets, generation outputs, stage outputs): one JSON object per line, UTF-8, non-ASCII kept."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any


def read_jsonl(path: str) -> list[dict[str, Any]]:
  """Every record of `path` (blank lines skipped)."""
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path: str, records: Iterable[dict[str, Any]]) -> int:
  """Writes records atomically (a temporary file, then a rename: a killed writer leaves the old
  file or none, never half of one); returns how many."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp, n = path + ".tmp", 0
  with open(tmp, "w", encoding="utf-8") as f:
    for record in records:
      f.write(json.dumps(record, ensure_ascii=False) + "\n")
      n += 1
  os.replace(tmp, path)
  return n
