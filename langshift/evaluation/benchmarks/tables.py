"""Row-by-row reading of benchmark tables as they are published: CSV (ArabicMMLU), JSON lines
(EXAMS, BeaverTails, also gzip- or xz-compressed), JSON arrays, and Parquet (the Hugging Face
conversions of every benchmark).

Each row comes with `where`, its location ("file line 7 (row 6)", "file row 3"), so a bad row
fails with one line naming the file, the line or row, and the field.
"""

from __future__ import annotations

import csv
import gzip
import json
import lzma
import math
import os
import re
from collections.abc import Iterable, Sequence
from typing import Any

TABLE_SUFFIXES = (".csv", ".jsonl", ".json", ".parquet")
_OPENERS = {".gz": gzip.open, ".xz": lzma.open}

Row = tuple[str, dict]  # (where, record)


class BenchmarkFormatError(ValueError):
  """A benchmark file does not have the expected layout. The message is one line that starts with
  the location of the offending row."""


def format_error(where: str, problem: str) -> BenchmarkFormatError:
  return BenchmarkFormatError(" ".join(f"{where}: {problem}".split()))


def _strip_compression(path: str):
  base, ext = os.path.splitext(path)
  return (base, _OPENERS[ext]) if ext in _OPENERS else (path, None)


def is_table(path: str) -> bool:
  base, opener = _strip_compression(path)
  base = base.lower()
  # Parquet compresses itself; a .parquet.gz is not something any benchmark ships.
  return base.endswith(TABLE_SUFFIXES) and not (opener and base.endswith(".parquet"))


def list_tables(root: str) -> list[str]:
  """Every table file under `root`, recursively, in a fixed (sorted) order."""
  found = []
  for folder, dirs, files in os.walk(root):
    dirs.sort()
    found += [os.path.join(folder, f) for f in sorted(files) if is_table(f)]
  return found


def path_tokens(path: str, root: str) -> set[str]:
  """Lower-case words of the path below `root`, split at "/", "-", "_" and "." (not at spaces, so
  a subject folder such as "Driving Test" never reads as a "test" split)."""
  rel = os.path.relpath(path, root)
  return {t for t in re.split(r"[/\\\-_.]", rel.lower()) if t}


def _open_text(path: str):
  _, opener = _strip_compression(path)
  # utf-8-sig: CSVs exported from spreadsheets often start with a byte-order mark.
  return (opener or open)(path, "rt", encoding="utf-8-sig", newline="")


def _csv_rows(path: str) -> Iterable[Row]:
  with _open_text(path) as f:
    reader = csv.DictReader(f)
    try:
      for i, row in enumerate(reader, start=1):
        where = f"{path} line {reader.line_num} (row {i})"
        if None in row:
          raise format_error(where, f"{len(row[None])} more field(s) than the header has")
        yield where, row
    except csv.Error as e:
      raise format_error(f"{path} line {reader.line_num}", f"malformed CSV: {e}") from None


def _json_object(where: str, value: Any) -> dict:
  if not isinstance(value, dict):
    raise format_error(where, f"expected a JSON object, got {type(value).__name__}")
  return value


def _json_rows(path: str) -> Iterable[Row]:
  with _open_text(path) as f:
    text = f.read()
  if text.lstrip().startswith("["):  # one JSON array of records
    try:
      items = json.loads(text)
    except json.JSONDecodeError as e:
      raise format_error(f"{path} line {e.lineno}", f"malformed JSON ({e.msg})") from None
    for i, item in enumerate(items, start=1):
      where = f"{path} item {i}"
      yield where, _json_object(where, item)
    return
  for n, line in enumerate(text.splitlines(), start=1):
    if not line.strip():
      continue
    where = f"{path} line {n}"
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      raise format_error(where, f"malformed JSON ({e.msg} at column {e.colno})") from None
    yield where, _json_object(where, record)


def _parquet_rows(path: str) -> Iterable[Row]:
  import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel

  try:
    rows = pq.read_table(path).to_pylist()
  except Exception as e:  # pylint: disable=broad-except  (pyarrow raises several types)
    raise format_error(path, f"unreadable Parquet file ({e})") from None
  for i, row in enumerate(rows, start=1):
    yield f"{path} row {i}", row


def read_rows(path: str) -> list[Row]:
  """All rows of one table file, each with its location."""
  base = _strip_compression(path)[0].lower()
  reader = (
      _csv_rows
      if base.endswith(".csv")
      else _parquet_rows
      if base.endswith(".parquet")
      else _json_rows
  )
  try:
    return list(reader(path))
  except UnicodeDecodeError as e:
    raise format_error(path, f"not UTF-8 text ({e.reason} at byte {e.start})") from None


def is_empty(value: Any) -> bool:
  """Empty cells: missing, null, NaN (pandas-written Parquet) or blank text."""
  if value is None:
    return True
  if isinstance(value, float) and math.isnan(value):
    return True
  return isinstance(value, str) and not value.strip()


def _names(names: Sequence[str]) -> str:
  first, rest = repr(names[0]), ", ".join(repr(n) for n in names[1:])
  return f"{first} (or {rest})" if rest else first


def text_field(row: dict, where: str, *names: str, required: bool = True) -> str:
  """The first of `names` present in the row, as stripped text. Required fields must be present
  and non-empty; optional ones give "" when absent or empty."""
  for name in names:
    if name in row and row[name] is not None:
      value = row[name]
      if is_empty(value):
        if required:
          raise format_error(where, f"empty field {name!r}")
        return ""
      return str(value).strip()
  if required:
    raise format_error(where, f"missing field {_names(names)}")
  return ""
