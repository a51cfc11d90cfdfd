"""Record sources: JSONL / text / Parquet by glob, TFDS without TensorFlow, bad-input errors."""

import sys

import pytest
from data_fixtures import write_jsonl

from langshift.data import config as config_lib
from langshift.data import sources


def test_jsonl_index_lines_numbers_and_crlf(tmp_path, monkeypatch):
  path = tmp_path / "a.jsonl"
  path.write_bytes(b'{"text": "one"}\r\n\n   \n{"text": "tw\xc3\xb6"}\n{"text": "three"}')
  # A tiny read block makes lines straddle blocks while indexing.
  monkeypatch.setattr(sources, "_INDEX_READ_BYTES", 7)
  src = sources.JsonlSource([str(path)], "a", "raise")
  assert len(src) == 3
  assert [src[i][1]["text"] for i in range(3)] == ["one", "twö", "three"]
  assert [src[i][0] for i in range(3)] == [f"{path}:1", f"{path}:4", f"{path}:5"]


def test_malformed_jsonl_line_error_or_skip(tmp_path):
  path = tmp_path / "bad.jsonl"
  path.write_text('{"text": "ok"}\n{"text": broken\n[1, 2]\n{"text": "ok again"}\n')
  src = sources.JsonlSource([str(path)], "bad", "raise")
  assert src[0][1] == {"text": "ok"}
  with pytest.raises(sources.RecordError, match=rf"{path}:2: malformed JSON line"):
    src[1]
  with pytest.raises(sources.RecordError, match=rf"{path}:3: expected a JSON object"):
    src[2]
  skipping = sources.JsonlSource([str(path)], "bad", "skip")
  assert [skipping[i][1] for i in range(4)] == [{"text": "ok"}, None, None, {"text": "ok again"}]
  assert skipping.bad_records.count == 2


def test_text_units(tmp_path):
  (tmp_path / "a.txt").write_text("p1 line1\np1 line2\n\n\np2 line1\n")
  (tmp_path / "b.txt").write_text("single\n")
  files = sources.expand_paths(str(tmp_path / "*.txt"))
  assert files == [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")]
  texts = lambda unit: [r["text"] for _, r in sources.TextSource(files, "t", "raise", unit=unit)]
  assert texts("line") == ["p1 line1", "p1 line2", "p2 line1", "single"]
  assert texts("paragraph") == ["p1 line1\np1 line2", "p2 line1", "single"]
  assert texts("file") == ["p1 line1\np1 line2\n\n\np2 line1", "single"]


def test_expand_paths_globs_and_lists(tmp_path):
  for name in ("x/1.jsonl", "x/2.jsonl", "y/3.jsonl", "y/skip.txt"):
    (tmp_path / name).parent.mkdir(exist_ok=True)
    (tmp_path / name).write_text("{}\n")
  got = sources.expand_paths(f"{tmp_path}/*/*.jsonl")
  assert [p.split("/")[-1] for p in got] == ["1.jsonl", "2.jsonl", "3.jsonl"]
  assert sources.expand_paths(f"{tmp_path}/y/3.jsonl, {tmp_path}/x/1.jsonl") == sorted(
      [f"{tmp_path}/y/3.jsonl", f"{tmp_path}/x/1.jsonl"]
  )
  assert sources.expand_paths(f"{tmp_path}/none/*.jsonl") == []


def test_parquet_random_access(tmp_path):
  import pyarrow as pa
  import pyarrow.parquet as pq

  table = pa.table({"text": [f"doc {i}" for i in range(25)], "n": list(range(25))})
  pq.write_table(table, tmp_path / "a.parquet", row_group_size=7)
  pq.write_table(table.slice(0, 3), tmp_path / "b.parquet")
  src = sources.ParquetSource(
      sources.expand_paths(str(tmp_path / "*.parquet")), "p", cache_row_groups=1
  )
  assert len(src) == 28
  for i in (24, 0, 13, 7, 26):  # out of order: row groups evicted and re-read
    where, record = src[i]
    assert record["text"] == f"doc {i % 25}" and "row" in where


def test_tfds_builder_registers_local_files_without_tensorflow(tmp_path):
  from langshift.data.tfds_builder import build_tfds_corpus

  records = [
      {"text": f"документ {i}", "messages": [{"role": "user", "content": str(i)}]}
      for i in range(12)
  ]
  write_jsonl(tmp_path / "c.jsonl", records)
  name = build_tfds_corpus(
      "test_corpus", str(tmp_path / "*.jsonl"), str(tmp_path / "tfds"), fields=("text", "messages")
  )
  assert name == "langshift_corpus/test_corpus"
  cfg = config_lib.source_config(
      name="t", format="tfds", tfds_name=name, data_dir=str(tmp_path / "tfds")
  )
  src = sources.open_source(cfg)
  assert len(src) == 12
  assert [src[i][1]["text"] for i in range(12)] == [r["text"] for r in records]  # file order
  assert src[3][1]["messages"] == '[{"role": "user", "content": "3"}]'
  assert "tensorflow" not in sys.modules


def test_empty_sources_are_clear_errors(tmp_path):
  with pytest.raises(ValueError, match="matched no files"):
    sources.open_source(config_lib.source_config(name="e", path=str(tmp_path / "*.jsonl")))
  (tmp_path / "blank.jsonl").write_text("\n \n")
  with pytest.raises(ValueError, match="no records"):
    sources.open_source(config_lib.source_config(name="e", path=str(tmp_path / "*.jsonl")))


def test_remote_style_reads_go_through_epath(tmp_path):
  """gs:// files are read through one locked etils.epath handle; exercise that path locally."""
  path = tmp_path / "r.jsonl"
  write_jsonl(path, [{"text": f"r{i}"} for i in range(5)])
  src = sources.JsonlSource([str(path)], "r", "raise")
  for reader in src._readers:  # pylint: disable=protected-access
    reader._local = False  # pylint: disable=protected-access
  assert [src[i][1]["text"] for i in (4, 0, 2)] == ["r4", "r0", "r2"]
