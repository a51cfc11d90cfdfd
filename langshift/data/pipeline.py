"""The input pipeline the training engine calls: sources -> mixture -> tokens -> packed batches.

    it = make_train_iterator(config.data, tokenizer, seq_len=1024, global_batch_size=256, seed=0,
                             process_index=jax.process_index(), process_count=jax.process_count())
    batch = next(it)             # dict of [256 / process_count, 1024] numpy arrays
    state = it.get_state()       # JSON-serialisable; goes into the training checkpoint
    it.set_state(state)          # resumes exactly there

Stages (grain datasets):
  1. records    each source a random-access `MapDataset`, shuffled per epoch and repeated
  2. mixture    `MixtureMapDataset` (weighted); sliced per process
  3. examples   chunks of `tokenize_batch_size` records tokenized with one batched call, read
                ahead by `read_threads` threads (the tokenizers release the GIL)
  4. rows       `PackedIterDataset`, then batches of `global_batch_size / process_count` rows
Everything up to 3 is a pure function of the index, so the iterator state is tiny and exact.

Memory is bounded by the settings, not by document size: a plain-text document longer than
`document_piece_bytes(seq_len)` is read as pieces of about that size (`sources.DocumentPieces`),
so a chunk holds at most `tokenize_batch_size` pieces, and `read_threads + prefetch_chunks`
chunks are in flight. Measured for a single 22 MB document: docs/benchmarks.md.
"""

from __future__ import annotations

import zlib

import grain
import numpy as np
from absl import logging

from langshift.data import config as config_lib
from langshift.data import examples as examples_lib
from langshift.data import mixtures, selection
from langshift.data import sources as sources_lib
from langshift.data.packed_dataset import PackedIterDataset
from langshift.tokenization import chat_templates

# Positions over which realised mixture proportions are logged at start-up.
_PROPORTION_LOG_EXAMPLES = 100_000


def document_piece_bytes(seq_len: int) -> int:
  """Longest plain-text record read whole: 64 KiB, or about 16 rows of text (~4 bytes a token)
  for long rows, so that a piece boundary (a new segment) falls in at most one row in 16."""
  return max(1 << 16, 64 * seq_len)


def derived_seed(seed: int, *names) -> int:
  """A stable 32-bit seed for one named component (independent of Python's hash seed)."""
  key = "/".join(str(n) for n in (seed, *names)).encode()
  return zlib.crc32(key)


def _needs_template(sources) -> bool:
  return any(src.template != "none" for src in sources)


def _open_selected(src, on_bad_record: str, piece_bytes: int = 0):
  """A source's records, restricted by perplexity selection when configured; plain-text records
  over `piece_bytes` (> 0) read as pieces."""
  records = sources_lib.open_source(src, on_bad_record)
  if src.perplexity_field or src.perplexity_scores:
    records = _selected(src, records)
  if piece_bytes and src.template == "none":
    records = sources_lib.split_long_documents(records, src.text_field, piece_bytes)
  return records


def _selected(src, records):
  if src.perplexity_scores:
    try:
      scores = selection.load_scores(src.perplexity_scores, len(records))
    except ValueError as e:
      raise ValueError(f"source {src.name}: {e}") from None
  else:
    scores = selection.scores_from_records(records, src.perplexity_field)
  keep = selection.select_by_perplexity(
      scores, max_perplexity=src.max_perplexity, min_perplexity=src.min_perplexity
  )
  logging.info(
      "source %s: perplexity selection keeps %d of %d records", src.name, len(keep), len(records)
  )
  return sources_lib.SubsetSource(records, keep)


def _weighted_records(data_config, sources, seed: int, piece_bytes: int):
  datasets, bad = [], []
  for src in sources:
    records = _open_selected(src, data_config.on_bad_record, piece_bytes=piece_bytes)
    bad.append(getattr(records, "bad_records", None) or sources_lib.BadRecordLog(src.name))
    ds = grain.MapDataset.source(records)
    if data_config.shuffle:
      ds = ds.shuffle(seed=derived_seed(seed, "source", src.name))
    datasets.append(ds.repeat())
  mixture = mixtures.WeightedMixture(
      [src.weight for src in sources],
      seed=derived_seed(seed, "mixture"),
      block=data_config.mixture_block,
  )
  realised = mixture.realised_proportions(_PROPORTION_LOG_EXAMPLES)
  for src, w, r in zip(sources, mixture.weights, realised):
    logging.info(
        "mixture: source %s weight %.4f realised %.4f over the first %d examples",
        src.name,
        w,
        r,
        _PROPORTION_LOG_EXAMPLES,
    )
  return mixtures.MixtureMapDataset(datasets, mixture), bad


def _builder(data_config, sources, tokenizer, bad):
  template = None
  if _needs_template(sources):
    template = chat_templates.resolve_chat_template(
        data_config.chat_template, tokenizer.chat_template
    )
  return examples_lib.ExampleBuilder(
      sources, tokenizer, data_config, template=template, bad_records=bad
  )


def _pack(chunks: grain.MapDataset, data_config, seq_len: int) -> grain.IterDataset:
  ds = chunks.to_iter_dataset(
      grain.ReadOptions(
          num_threads=data_config.read_threads, prefetch_buffer_size=data_config.prefetch_chunks
      )
  )
  return PackedIterDataset(
      ds,
      seq_len,
      data_config.packing,
      overlong=data_config.overlong,
      boundary_remainder=data_config.boundary_remainder,
  )


def train_dataset(
    data_config,
    tokenizer,
    *,
    seq_len: int,
    global_batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
) -> grain.IterDataset:
  """The training stream of this process as a grain `IterDataset` of batches."""
  sources = config_lib.validate_data_config(data_config)
  if global_batch_size % process_count:
    raise ValueError(
        f"global_batch_size={global_batch_size} is not divisible by "
        f"process_count={process_count}"
    )
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} not in [0, {process_count})")
  records, bad = _weighted_records(data_config, sources, seed, document_piece_bytes(seq_len))
  builder = _builder(data_config, sources, tokenizer, bad)
  # Each process takes every process_count-th record of the one global mixture.
  records = records[process_index::process_count]
  # The stream is endless: dropping a remainder drops nothing, and keeps the batched length
  # within an index-sized integer for any tokenize_batch_size (grain rounds it up otherwise).
  chunks = records.batch(data_config.tokenize_batch_size, batch_fn=list, drop_remainder=True)
  chunks = chunks.map(builder)
  ds = _pack(chunks, data_config, seq_len).batch(
      global_batch_size // process_count, drop_remainder=True
  )
  if data_config.prefetch_batches:
    ds = grain.experimental.ThreadPrefetchIterDataset(
        ds, prefetch_buffer_size=data_config.prefetch_batches
    )
  return ds


def make_train_iterator(
    data_config,
    tokenizer,
    *,
    seq_len: int,
    global_batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
) -> grain.DatasetIterator:
  """Checkpointable iterator of training batches (dicts of [rows, seq_len] numpy arrays).

  Keys: inputs, targets, segment_ids, positions (int32), loss_weights (float32); see
  `langshift.data.packing`. `get_state()` / `set_state()` checkpoint and resume it exactly.
  """
  return iter(
      train_dataset(
          data_config,
          tokenizer,
          seq_len=seq_len,
          global_batch_size=global_batch_size,
          seed=seed,
          process_index=process_index,
          process_count=process_count,
      )
  )


def make_eval_batches(
    data_config,
    tokenizer,
    *,
    seq_len: int,
    global_batch_size: int,
    process_index: int = 0,
    process_count: int = 1,
    max_batches: int | None = None,
) -> list[dict[str, np.ndarray]]:
  """Held-out batches: every record of every source once, in order, packed; deterministic.

  Every process packs all rows (held-out sets are small) and takes every process_count-th, so all
  get the same number of batches; the last is filled up with all-padding rows (loss weight 0).
  """
  sources = config_lib.validate_data_config(data_config)
  if global_batch_size % process_count:
    raise ValueError(
        f"global_batch_size={global_batch_size} is not divisible by "
        f"process_count={process_count}"
    )
  parts, bad = [], []
  for k, src in enumerate(sources):
    records = _open_selected(
        src, data_config.on_bad_record, piece_bytes=document_piece_bytes(seq_len)
    )
    bad.append(getattr(records, "bad_records", None) or sources_lib.BadRecordLog(src.name))
    parts.append(grain.MapDataset.source(records).map(lambda e, k=k: (k, *e)))
  records = grain.MapDataset.concatenate(parts)
  builder = _builder(data_config, sources, tokenizer, bad)
  chunks = records.batch(data_config.tokenize_batch_size, batch_fn=list).map(builder)
  rows = []
  for row in _pack(chunks, data_config, seq_len):
    if max_batches is not None and len(rows) >= max_batches * global_batch_size:
      break
    rows.append(row)
  if not rows:
    return []
  num_batches = -(-len(rows) // global_batch_size)
  padding = {k: np.zeros_like(v) for k, v in rows[0].items()}
  rows += [padding] * (num_batches * global_batch_size - len(rows))
  rows = rows[process_index::process_count]
  per_batch = global_batch_size // process_count
  return [
      {k: np.stack([r[k] for r in rows[b * per_batch : (b + 1) * per_batch]]) for k in rows[0]}
      for b in range(num_batches)
  ]
