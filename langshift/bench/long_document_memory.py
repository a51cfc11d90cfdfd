"""Peak memory of the input pipeline over a source of one very long document.

    python -m langshift.bench.long_document_memory --megabytes=22 \
        --tokenizer=.cache/smollm2-135m-instruct

Writes a JSONL source holding a single document of about `--megabytes` MB (Russian-like text in
paragraphs), reads `--batches` training batches through `make_train_iterator` with the default
data settings (tokenize_batch_size 128, read_threads 2, prefetch_chunks 8, prefetch_batches 2)
and prints the process's peak RSS (`memory.process_peak_bytes`) before and after, and
tokens/s. Run it once per configuration: the peak is the process's. `--no_pieces` reads the
document whole, as the pipeline did before long documents were split (run it with a small
`--megabytes`: it grows with 128 copies of the document per tokenize chunk).
"""

from __future__ import annotations

import json
import os
import tempfile
import time

import numpy as np
from absl import app, flags

from langshift import memory
from langshift.data import config as config_lib
from langshift.data import pipeline
from langshift.tokenization.tokenizer import load_tokenizer

_MEGABYTES = flags.DEFINE_float("megabytes", 22.0, "Size of the one document (UTF-8), MB.")
_TOKENIZER = flags.DEFINE_string("tokenizer", None, "HF tokenizer directory (required).")
_SEQ_LEN = flags.DEFINE_integer("seq_len", 512, "Row length.")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Rows per batch.")
_BATCHES = flags.DEFINE_integer("batches", 2000, "Batches read.")
_NO_PIECES = flags.DEFINE_bool("no_pieces", False, "Read the document whole (the old pipeline).")
flags.mark_flags_as_required(["tokenizer"])

_WORDS = (
    "модель быстро учится новому языку и сохраняет навыки , обучая векторы новых токенов . "
    "the language model adapts quickly to new text while learning its extended vocabulary ."
).split()


def _peak_gib() -> float:
  return memory.process_peak_bytes() / memory.GIB


def write_document(path: str, megabytes: float, seed: int = 0) -> int:
  """One JSONL record whose text is paragraphs of random words; returns its size in bytes."""
  rng = np.random.default_rng(seed)
  paragraphs, size = [], 0
  while size < megabytes * 1e6:
    paragraph = " ".join(rng.choice(_WORDS, int(rng.integers(40, 200))))
    paragraphs.append(paragraph)
    size += len(paragraph.encode()) + 2
  line = json.dumps({"text": "\n\n".join(paragraphs)}, ensure_ascii=False) + "\n"
  with open(path, "w", encoding="utf-8") as f:
    f.write(line)
  return len(line.encode())


def main(argv):
  del argv
  if _NO_PIECES.value:
    pipeline.document_piece_bytes = lambda seq_len: 1 << 62
  tokenizer = load_tokenizer(_TOKENIZER.value)
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "one.jsonl")
    size = write_document(path, _MEGABYTES.value)
    data = config_lib.default_data_config()
    data.sources.one = config_lib.source_config(path=path)
    before = _peak_gib()
    it = pipeline.make_train_iterator(
        data, tokenizer, seq_len=_SEQ_LEN.value, global_batch_size=_BATCH.value, seed=0
    )
    start, tokens = time.perf_counter(), 0
    for _ in range(_BATCHES.value):
      tokens += int(np.sum(next(it)["segment_ids"] > 0))
    seconds = time.perf_counter() - start
    it.close()
  print(
      f"document {size / 1e6:.1f} MB | pieces {'off' if _NO_PIECES.value else 'on'} | "
      f"{_BATCHES.value} batches of {_BATCH.value} x {_SEQ_LEN.value} | {tokens / seconds:,.0f} "
      f"tokens/s | peak RSS before the pipeline {before:.2f} GiB, after {_peak_gib():.2f} GiB"
  )


if __name__ == "__main__":
  app.run(main)
