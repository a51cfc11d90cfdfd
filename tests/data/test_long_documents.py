"""Memory bounded by settings, not document size: a plain-text document longer than a piece is
read and tokenized in pieces cut at paragraph boundaries (BOS on the first, EOS on the last),
and any tokenize batch size works."""

import numpy as np
from data_fixtures import write_jsonl

from langshift.data import config as config_lib
from langshift.data import examples, pipeline, sources

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()


def _document(n_paragraphs, seed=0):
  rng = np.random.default_rng(seed)
  return "\n\n".join(" ".join(rng.choice(WORDS, 40)) for _ in range(n_paragraphs))


def test_long_records_become_pieces_that_reassemble_them(tmp_path):
  docs = [_document(2, 0), _document(600, 1), _document(3, 2), _document(400, 3)]
  write_jsonl(tmp_path / "c.jsonl", [{"text": d, "id": i} for i, d in enumerate(docs)])
  base = sources.JsonlSource([str(tmp_path / "c.jsonl")], "c", "raise")
  max_bytes = 50_000
  pieces = sources.split_long_documents(base, "text", max_bytes)
  items = [pieces[i] for i in range(len(pieces))]
  by_doc = {}
  for where, record in items:
    by_doc.setdefault(record["id"], []).append((where, record))
  with open(tmp_path / "c.jsonl", "rb") as f:
    sizes = [len(line.rstrip(b"\n")) for line in f]
  counts = [-(-size // max_bytes) for size in sizes]  # ceil(bytes / max_bytes)
  assert counts == [1, 3, 1, 2] and [len(by_doc[i]) for i in range(4)] == counts
  assert [r["id"] for _, r in items] == [0, 1, 1, 1, 2, 3, 3]  # pieces in place, in order
  for i, doc in enumerate(docs):
    parts = by_doc[i]
    assert "".join(r["text"] for _, r in parts) == doc
    if len(parts) > 1:
      assert parts[1][0] == f"{tmp_path}/c.jsonl:{i + 1} (piece 2 of {len(parts)})"
      assert all(len(r["text"]) <= 1.25 * max_bytes for _, r in parts)
      assert all(r["text"].endswith("\n\n") for _, r in parts[:-1])  # cut between paragraphs


def test_only_the_first_piece_gets_bos_and_only_the_last_eos(bpe_tokenizer):
  out = examples.text_examples(
      ["one", "two", "three", "whole"],
      bpe_tokenizer,
      add_bos=True,
      add_eos=True,
      with_boundaries=False,
      pieces=[(0, 3), (1, 3), (2, 3), None],
  )
  bos, eos = bpe_tokenizer.bos_id, bpe_tokenizer.eos_id
  ends = [(e["tokens"][0] == bos, e["tokens"][-1] == eos) for e in out]
  assert ends == [(True, False), (False, False), (False, True), (True, True)]


class _Recording:
  """The tokenizer, recording the characters of every text and of every batched call."""

  def __init__(self, tokenizer):
    self._tokenizer, self.texts, self.calls = tokenizer, [], []

  def __getattr__(self, name):
    return getattr(self._tokenizer, name)

  def _record(self, texts):
    self.texts += [len(t) for t in texts]
    self.calls.append(sum(len(t) for t in texts))

  def encode_batch(self, texts, *args, **kwargs):
    self._record(texts)
    return self._tokenizer.encode_batch(texts, *args, **kwargs)

  def encode_batch_with_offsets(self, texts):
    self._record(texts)
    return self._tokenizer.encode_batch_with_offsets(texts)


def _data(path, **overrides):
  data = config_lib.default_data_config()
  data.sources.one = config_lib.source_config(path=str(path))
  data.update(overrides)
  return data


def test_a_single_huge_document_is_tokenized_in_bounded_pieces(tmp_path, bpe_tokenizer):
  document = _document(3000)  # ~750 kB: a source of one document, repeated every epoch
  write_jsonl(tmp_path / "one.jsonl", [{"text": document}])
  tokenizer = _Recording(bpe_tokenizer)
  for packing in ("concat", "boundary"):  # plain ids, and ids with offsets
    data = _data(tmp_path / "one.jsonl", tokenize_batch_size=16, packing=packing)
    it = pipeline.make_train_iterator(data, tokenizer, seq_len=64, global_batch_size=4, seed=0)
    for _ in range(3):
      next(it)
    it.close()
  piece = 1 << 16  # the pipeline's piece size for rows of 64 tokens
  assert tokenizer.texts and max(tokenizer.texts) <= 1.25 * piece < len(document)
  assert max(tokenizer.calls) <= 1 << 22  # characters per batched call


def test_any_tokenize_batch_size_works(tmp_path, bpe_tokenizer):
  write_jsonl(tmp_path / "c.jsonl", [{"text": _document(2, i)} for i in range(10)])
  data = _data(tmp_path / "c.jsonl", tokenize_batch_size=1)
  it = pipeline.make_train_iterator(data, bpe_tokenizer, seq_len=32, global_batch_size=4, seed=0)
  assert next(it)["inputs"].shape == (4, 32)
  it.close()
