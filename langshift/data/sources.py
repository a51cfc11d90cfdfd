"""Random-access record sources: JSONL, text and Parquet files by glob, and TFDS data sources.

Every source is a sequence: `len(source)` records, `source[i] -> (where, record)` with `where` a
"file:line"-style location for error messages and `record` a dict (or None for a malformed record
skipped under `on_bad_record="skip"`). Random access is what lets grain shuffle globally and
resume from an index; files are indexed once (byte ranges of lines) and read lazily, so corpora
larger than memory work. Paths go through `etils.epath`, so `gs://` globs work like local ones.

Documents of any size: `DocumentPieces` presents a plain-text record longer than `max_bytes` as
several records, each a piece of its text cut at a paragraph (or word) boundary, so what the
pipeline holds and tokenizes at once is bounded by its settings, not by the largest document.
"""

from __future__ import annotations

import collections
import json
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import logging
from etils import epath

_GLOB_CHARS = "*?["
_INDEX_READ_BYTES = 1 << 26


class RecordError(ValueError):
  """A record that cannot be read or lacks a configured field; the message starts with its
  location."""


class BadRecordLog:
  """Counts skipped records (thread-safe) and logs the first few with their location."""

  def __init__(self, name: str, log_first: int = 10):
    self.name = name
    self.count = 0
    self._log_first = log_first
    self._lock = threading.Lock()

  def skip(self, error: Exception) -> None:
    with self._lock:
      self.count += 1
      count = self.count
    if count <= self._log_first or count % 1000 == 0:
      logging.warning("source %s: skipped bad record #%d: %s", self.name, count, error)


def expand_paths(pattern: str) -> list[str]:
  """Sorted files matching a glob (or several, comma-separated); `gs://` works via etils.epath.

  A pattern that names an existing file as a whole is that file, commas and all (a sweep's cell
  workdirs are named "key=value,key=value").
  """
  if "," in pattern and not any(c in pattern for c in _GLOB_CHARS):
    whole = epath.Path(pattern.strip())
    if whole.is_file():
      return [str(whole)]
  files = []
  for part in (p.strip() for p in pattern.split(",")):
    if not part:
      continue
    if not any(c in part for c in _GLOB_CHARS):
      path = epath.Path(part)
      files.extend([str(path)] if path.exists() else [])
      continue
    # Split into the literal directory prefix and the pattern below it: epath globs relative paths.
    parts = part.split("/")
    first = next(i for i, p in enumerate(parts) if any(c in p for c in _GLOB_CHARS))
    base = "/".join(parts[:first]) or "."
    files.extend(str(p) for p in epath.Path(base).glob("/".join(parts[first:])) if p.is_file())
  return sorted(dict.fromkeys(files))


class _FileReader:
  """Thread-safe byte-range reads: `os.pread` for local files, a locked handle otherwise."""

  def __init__(self, path: str):
    self.path = path
    self._local = "://" not in path
    self._fd = os.open(path, os.O_RDONLY) if self._local else None
    self._handle = None
    self._lock = threading.Lock()

  def read(self, start: int, end: int) -> bytes:
    if self._local:
      return os.pread(self._fd, end - start, start)
    with self._lock:
      if self._handle is None:
        self._handle = epath.Path(self.path).open("rb")
      self._handle.seek(start)
      return self._handle.read(end - start)

  def __del__(self):
    if self._fd is not None:
      os.close(self._fd)


def _index_lines(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(start, end, 1-based line number) of every non-blank line; ends exclude "\\n" and "\\r"."""
  starts, ends, numbers = [], [], []
  offset, lines_before, tail = 0, 0, b""
  with epath.Path(path).open("rb") as f:
    while True:
      block = f.read(_INDEX_READ_BYTES)
      data = tail + block
      buf = np.frombuffer(data, np.uint8)
      if block:  # Lines up to the last newline are complete; the rest waits for the next block.
        line_ends = np.flatnonzero(buf == 10)
        consumed = int(line_ends[-1]) + 1 if len(line_ends) else 0
      else:  # End of file: a last line without newline.
        line_ends = np.array([len(data)] if data else [], np.int64)
        consumed = len(data)
      line_starts = np.concatenate([[0], line_ends[:-1] + 1]).astype(np.int64)[: len(line_ends)]
      line_ends = ends_without_cr(buf, line_starts, line_ends)
      # A line is blank when it holds only spaces and tabs.
      filled = np.concatenate([[0], np.cumsum((buf != 32) & (buf != 9) & (buf != 13))])
      nonblank = filled[line_ends] - filled[line_starts] > 0
      starts.append(line_starts[nonblank] + offset)
      ends.append(line_ends[nonblank] + offset)
      numbers.append(np.flatnonzero(nonblank) + lines_before + 1)
      lines_before += len(line_starts)
      tail, offset = data[consumed:], offset + consumed
      if not block:
        break
  return tuple(np.concatenate(xs).astype(np.int64) for xs in (starts, ends, numbers))


def ends_without_cr(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
  """Line ends moved before a trailing "\\r" (CRLF files)."""
  ends = ends.astype(np.int64).copy()
  if len(ends):
    has_cr = (ends > starts) & (buf[np.maximum(ends - 1, 0)] == 13)
    ends[has_cr] -= 1
  return ends


class _ByteRangeSource(Sequence):
  """Records that are byte ranges of files; subclasses decode the bytes."""

  def __init__(self, paths: Sequence[str], name: str, on_bad_record: str):
    if not paths:
      raise ValueError(f"source {name}: no files")
    self.name = name
    self.paths = list(paths)
    self.bad_records = BadRecordLog(name)
    self._on_bad_record = on_bad_record
    self._readers = [_FileReader(p) for p in self.paths]
    index = [self._index_file(p) for p in self.paths]
    self._file = np.concatenate([np.full(len(s), i, np.int32) for i, (s, _, _) in enumerate(index)])
    self._start = np.concatenate([s for s, _, _ in index])
    self._end = np.concatenate([e for _, e, _ in index])
    self._line = np.concatenate([n for _, _, n in index])
    if not len(self._start):
      raise ValueError(f"source {name}: no records in {self.paths}")

  def _index_file(self, path: str):
    return _index_lines(path)

  def __len__(self):
    return len(self._start)

  def record_bytes(self) -> np.ndarray:
    """Size of every record in bytes, known from the index without reading it."""
    return self._end - self._start

  def __getitem__(self, i):
    i = int(i)
    f = self._file[i]
    where = f"{self.paths[f]}:{self._line[i]}"
    raw = self._readers[f].read(int(self._start[i]), int(self._end[i]))
    try:
      return where, self._decode(raw, where)
    except RecordError as e:
      if self._on_bad_record == "skip":
        self.bad_records.skip(e)
        return where, None
      raise

  def _decode(self, raw: bytes, where: str) -> dict[str, Any]:
    raise NotImplementedError


class JsonlSource(_ByteRangeSource):
  """One JSON object per non-blank line."""

  def _decode(self, raw, where):
    try:
      record = json.loads(raw)
    except ValueError as e:
      raise RecordError(f"{where}: malformed JSON line: {e}") from None
    if not isinstance(record, dict):
      raise RecordError(f"{where}: expected a JSON object, got {type(record).__name__}")
    return record


class TextSource(_ByteRangeSource):
  """Plain UTF-8 text: a document per non-blank line, per blank-line-separated paragraph, or per
  file."""

  def __init__(self, paths, name, on_bad_record, text_field="text", unit="line"):
    self._unit = unit
    self._field = text_field
    super().__init__(paths, name, on_bad_record)

  def _index_file(self, path):
    starts, ends, numbers = _index_lines(path)
    if self._unit == "line" or not len(starts):
      return starts, ends, numbers
    if self._unit == "file":
      return starts[:1], ends[-1:], numbers[:1]
    # Paragraphs: runs of consecutive non-blank lines.
    first = np.flatnonzero(np.diff(numbers, prepend=-1) != 1)
    last = np.append(first[1:] - 1, len(numbers) - 1)
    return starts[first], ends[last], numbers[first]

  def _decode(self, raw, where):
    try:
      return {self._field: raw.decode("utf-8")}
    except UnicodeDecodeError as e:
      raise RecordError(f"{where}: not UTF-8: {e}") from None


class ParquetSource(Sequence):
  """Rows of Parquet files, read a row group at a time (a few row groups are cached)."""

  def __init__(
      self,
      paths: Sequence[str],
      name: str,
      columns: Sequence[str] | None = None,
      cache_row_groups: int = 4,
  ):
    import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel

    if not paths:
      raise ValueError(f"source {name}: no files")
    self.name, self.paths = name, list(paths)
    self.bad_records = BadRecordLog(name)
    self._pq = pq
    self._columns = list(columns) if columns else None
    groups = []  # (file index, row group, rows)
    for fi, path in enumerate(self.paths):
      with epath.Path(path).open("rb") as f:
        meta = pq.ParquetFile(f).metadata
        groups += [(fi, g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)]
    self._groups = [g for g in groups if g[2] > 0]
    self._cum = np.cumsum([0] + [g[2] for g in self._groups])
    if self._cum[-1] == 0:
      raise ValueError(f"source {name}: no rows in {self.paths}")
    self._cache: collections.OrderedDict[int, list] = collections.OrderedDict()
    self._cache_size = cache_row_groups
    self._lock = threading.Lock()

  def __len__(self):
    return int(self._cum[-1])

  def _row_group(self, g: int) -> list[dict[str, Any]]:
    with self._lock:
      if g in self._cache:
        self._cache.move_to_end(g)
        return self._cache[g]
    fi, group, _ = self._groups[g]
    with epath.Path(self.paths[fi]).open("rb") as f:
      columns = self._columns
      available = self._pq.ParquetFile(f).schema_arrow.names
      if columns is not None:
        columns = [c for c in columns if c in available]
      rows = self._pq.ParquetFile(f).read_row_group(group, columns=columns).to_pylist()
    with self._lock:
      self._cache[g] = rows
      while len(self._cache) > self._cache_size:
        self._cache.popitem(last=False)
    return rows

  def __getitem__(self, i):
    i = int(i)
    g = int(np.searchsorted(self._cum, i, side="right") - 1)
    row = i - int(self._cum[g])
    fi = self._groups[g][0]
    return f"{self.paths[fi]} row group {self._groups[g][1]} row {row}", self._row_group(g)[row]


class TfdsSource(Sequence):
  """A prepared TFDS dataset read with `tfds.data_source` (array_record; no TensorFlow)."""

  def __init__(self, tfds_name: str, split: str, data_dir: str | None, name: str):
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

    self.name = name
    self.bad_records = BadRecordLog(name)
    self._where = f"tfds:{tfds_name}[{split}]"
    self._ds = tfds.data_source(tfds_name, split=split, data_dir=data_dir or None)
    if len(self._ds) == 0:
      raise ValueError(f"source {name}: {self._where} has no records")

  def __len__(self):
    return len(self._ds)

  def __getitem__(self, i):
    return f"{self._where} #{int(i)}", _decode_bytes(self._ds[int(i)])


def _decode_bytes(value):
  if isinstance(value, bytes):
    return value.decode("utf-8")
  if isinstance(value, np.ndarray) and value.dtype == object:
    return [_decode_bytes(v) for v in value.tolist()]
  if isinstance(value, dict):
    return {k: _decode_bytes(v) for k, v in value.items()}
  return value


class SubsetSource(Sequence):
  """The records of `base` at `indices` (e.g. those kept by perplexity selection)."""

  def __init__(self, base: Sequence, indices: np.ndarray):
    if not len(indices):
      raise ValueError(f"source {getattr(base, 'name', base)}: the selection kept no records")
    self.base, self.indices = base, np.asarray(indices, np.int64)
    self.name = getattr(base, "name", "")
    self.bad_records = getattr(base, "bad_records", None)

  def __len__(self):
    return len(self.indices)

  def record_bytes(self) -> np.ndarray | None:
    sizes = getattr(self.base, "record_bytes", None)
    return None if sizes is None else sizes()[self.indices]

  def __getitem__(self, i):
    return self.base[int(self.indices[int(i)])]


class QuestionAnswerSamples(Sequence):
  """`base` with every question/answer record read as two text records, the question then the
  answer (InsCP, Chen & Lee 2024, arXiv:2405.20175: each question and each answer is its own
  sample); sample 2i is record i's `question_field`, sample 2i + 1 its `answer_field`."""

  def __init__(
      self,
      base: Sequence,
      question_field: str,
      answer_field: str,
      text_field: str,
      on_bad_record: str = "raise",
  ):
    self.base, self._fields, self._text = base, (question_field, answer_field), text_field
    self.name = getattr(base, "name", "")
    self.bad_records = getattr(base, "bad_records", None) or BadRecordLog(self.name)
    self._on_bad_record = on_bad_record

  def __len__(self):
    return 2 * len(self.base)

  def __getitem__(self, i):
    record_index, part = divmod(int(i), 2)
    where, record = self.base[record_index]
    if record is None:
      return where, None
    field = self._fields[part]
    value = record.get(field) if isinstance(record, dict) else None
    if not isinstance(value, str):
      error = RecordError(
          f"{where}: qa_split needs a string field {field!r} (the "
          f"{('question', 'answer')[part]}); the record has {sorted(record)}"
      )
      if self._on_bad_record != "skip":
        raise error
      self.bad_records.skip(error)
      return where, None
    return f"{where} ({('question', 'answer')[part]})", {self._text: value}


# The key a piece's record carries: (piece index, number of pieces) of its document, so that only
# the first piece gets BOS and only the last EOS.
PIECE_KEY = "__langshift_piece__"


def piece_cuts(text: str, pieces: int) -> list[int]:
  """Character offsets cutting `text` into `pieces` nearly equal parts, each cut moved forward
  to just after a newline (or else a space) within a quarter of a part, so that paragraphs, or at
  least words, stay whole; 0 and len(text) included."""
  n = len(text)
  part = n / pieces
  cuts = [0]
  for k in range(1, pieces):
    nominal = max(int(k * part), cuts[-1] + 1)
    end = nominal + max(int(part / 4), 1)
    for sep in ("\n", " "):
      at = text.find(sep, nominal, end)
      if at != -1:
        nominal = at + 1
        while sep == "\n" and nominal < n and text[nominal] in "\r\n":
          nominal += 1
        break
    cuts.append(min(nominal, n))
  cuts.append(n)
  return cuts


class DocumentPieces(Sequence):
  """`base` with every record over `max_bytes` presented as ceil(bytes / max_bytes) records, each
  a piece of its `text_field` (see `piece_cuts`); other records are unchanged.

  The piece count comes from the record's size in the file index, so the sequence stays random
  access and its length is known without reading anything. A piece re-reads its record (a long
  JSON line must be parsed whole) and keeps only its part, so at most one document per reading
  thread is in memory at a time.
  """

  def __init__(self, base: Sequence, text_field: str, max_bytes: int):
    self.base, self._field = base, text_field
    self.name = getattr(base, "name", "")
    self.bad_records = getattr(base, "bad_records", None)
    counts = -(-np.asarray(base.record_bytes(), np.int64) // max_bytes)
    self._long = np.flatnonzero(counts > 1)  # only those records get an entry: memory O(long)
    self._pieces = counts[self._long]
    extra_before = np.concatenate([[0], np.cumsum(self._pieces - 1)])
    self._first = self._long + extra_before[:-1]  # index of each long record's first piece
    self._extra = extra_before  # pieces added by the long records before (and at) each one
    self._len = len(base) + int(extra_before[-1])

  def __len__(self):
    return self._len

  def __getitem__(self, i):
    i = int(i)
    j = int(np.searchsorted(self._first, i, side="right")) - 1
    if j >= 0 and i < self._first[j] + self._pieces[j]:
      record_index, piece, pieces = (
          int(self._long[j]),
          i - int(self._first[j]),
          int(self._pieces[j]),
      )
    else:
      record_index, piece, pieces = i - int(self._extra[j + 1] if j >= 0 else 0), 0, 1
    where, record = self.base[record_index]
    if pieces == 1 or record is None or not isinstance(record.get(self._field), str):
      return where, record  # a missing or non-text field is reported by the example builder
    text = record[self._field]
    cuts = piece_cuts(text, pieces)
    piece_record = {**record, self._field: text[cuts[piece] : cuts[piece + 1]]}
    piece_record[PIECE_KEY] = (piece, pieces)
    return f"{where} (piece {piece + 1} of {pieces})", piece_record


def split_long_documents(records: Sequence, text_field: str, max_bytes: int) -> Sequence:
  """`records` as `DocumentPieces` when some record is over `max_bytes` (sources that cannot
  tell record sizes without reading them, Parquet and TFDS, are returned as they are)."""
  sizes = getattr(records, "record_bytes", None)
  sizes = None if sizes is None else sizes()
  if sizes is None or not len(sizes) or int(np.max(sizes)) <= max_bytes:
    return records
  pieces = DocumentPieces(records, text_field, max_bytes)
  logging.info(
      "source %s: %d documents over %d bytes read as %d pieces",
      pieces.name,
      len(pieces._long),  # pylint: disable=protected-access
      max_bytes,
      int(pieces._pieces.sum()),  # pylint: disable=protected-access
  )
  return pieces


def open_source(src, on_bad_record: str = "raise") -> Sequence:
  """The record source described by a resolved source config (`langshift.data.config`)."""
  records = _open_records(src, on_bad_record)
  if src.get("qa_split"):
    records = QuestionAnswerSamples(
        records, src.prompt_field, src.response_field, src.text_field, on_bad_record
    )
  return records


def _open_records(src, on_bad_record: str) -> Sequence:
  if src.format == "tfds":
    return TfdsSource(src.tfds_name, src.split, src.data_dir, src.name)
  pattern = src.path
  if isinstance(pattern, (list, tuple)):
    pattern = ",".join(pattern)
  files = expand_paths(pattern)
  if not files:
    raise ValueError(f"source {src.name}: path {pattern!r} matched no files")
  if src.format == "jsonl":
    return JsonlSource(files, src.name, on_bad_record)
  if src.format == "text":
    return TextSource(files, src.name, on_bad_record, text_field=src.text_field, unit=src.text_unit)
  if src.format == "parquet":
    return ParquetSource(files, src.name)
  raise ValueError(f"source {src.name}: unknown format {src.format!r}")
