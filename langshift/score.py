"""Corpus perplexity scoring: the per-document perplexity of every record of a source under a
model, written as the scores file that perplexity selection reads (`data.sources.<name>.
perplexity_scores`, `langshift/data/selection.py`).

InsCP (Chen & Lee 2024, "InstructionCP: A fast approach to transfer Large Language Models into
target language", arXiv:2405.20175, Sec. 4) trains on data of low perplexity under the model being
adapted (<= 15) and contrasts it with high-perplexity (>= 30) wiki text; this job produces those
numbers for a whole corpus.

  python -m langshift.score --model=.cache/smollm2-135m-instruct \\
      --source=.cache/corpora/inscp/zh-TW/train.jsonl --out=workdir/scores

Scores are aligned with the source's records exactly as the data pipeline opens them (same files,
same `text_field`, same `qa_split`): `<out>/scores.npy` holds one float per record, the
perplexity exp(NLL / tokens) of its text; a record with no tokens (empty text, or a bad record
skipped with `--on_bad_record=skip`) scores +inf, which no `max_perplexity` keeps.

How it runs:
  * NLL over rolling windows of `max_length` tokens (`LocalScorer.loglikelihood_rolling`,
    langshift/evaluation/scoring.py: every token predicted once, nothing cut); the windows of
    `batch_size` records are packed back to back into `rows_per_call` rows per forward pass,
    longest first, with bucketed shapes (a handful of compilations);
  * through the resumable generation job (`langshift/generation/job.py`): records in shards of
    `shard_size`, a shard durable batch by batch and renamed when whole, one lock per worker, so
    a job killed at any point and rerun scores every record exactly once;
  * every process of a multi-host job scores its own round-robin share of the shards with its own
    replica on its local devices (no cross-host collective in the loop); process 0 writes the
    scores file once every share is in.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from langshift.data import config as data_config_lib
from langshift.data import sources as sources_lib
from langshift.generation.interface import GenerationOptions

SCORES_FILE = "scores.npy"
REQUESTS_FILE = "requests.jsonl"
OUTPUTS_DIR = "outputs"
# The LANGSHIFT_FAULT counter reached after each durable batch (crash tests).
FAULT_COUNTER = "score_records"


class PerplexityBackend:
  """A `TextGenerator`-shaped scorer for the generation job: `complete` returns, per text, its
  summed NLL (nats) and scored-token count instead of a continuation."""

  def __init__(self, scorer, name: str):
    self.scorer, self.name = scorer, name
    self.tokens = 0  # tokens scored by this process (throughput)

  def complete(self, prompts: Sequence[str], options: GenerationOptions) -> list[dict]:
    del options
    texts = [p for p in prompts if p]
    scored = iter(self.scorer.token_nll(texts)) if texts else iter(())
    out = []
    for text in prompts:
      nll, tokens = next(scored) if text else (0.0, 0)
      self.tokens += tokens
      out.append({"nll": float(nll), "tokens": int(tokens)})
    return out

  def chat(self, conversations, options):
    raise ValueError("perplexity scoring takes text records, not conversations")


def perplexity(nll: float, tokens: int) -> float:
  return math.exp(nll / tokens) if tokens else math.inf


def record_texts(src, on_bad_record: str = "raise") -> list[str | None]:
  """The text of every record, as the pipeline opens the source (None: a skipped bad record)."""
  records = sources_lib.open_source(src, on_bad_record)
  texts: list[str | None] = []
  for i in range(len(records)):
    where, record = records[i]
    if record is None:
      texts.append(None)
      continue
    value = record.get(src.text_field)
    if not isinstance(value, str):
      raise sources_lib.RecordError(
          f"{where}: no string field {src.text_field!r} to score (the record has "
          f"{sorted(record)})"
      )
    texts.append(value)
  return texts


def _write_requests(path: str, texts: Sequence[str | None]) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    for i, text in enumerate(texts):
      f.write(json.dumps({"id": i, "prompt": text or ""}, ensure_ascii=False) + "\n")
  os.replace(tmp, path)  # whole or absent: a rerun never reads half a request file


def _count_lines(path: str) -> int:
  with open(path, "rb") as f:
    return sum(1 for line in f if line.strip())


def score_corpus(
    src,
    out_dir: str,
    make_scorer: Callable[[], Any],
    *,
    batch_size: int = 16,
    shard_size: int = 256,
    on_bad_record: str = "raise",
    name: str = "model",
    barrier: Callable[[str], None] | None = None,
    process_index: int = 0,
    process_count: int = 1,
) -> dict[str, Any]:
  """Scores every record of the resolved source `src` into `<out_dir>/scores.npy`; returns a
  summary (on process 0; {} elsewhere). `make_scorer()` builds this process's `LocalScorer`
  (called only when there is work left). `barrier(tag)` waits for every process (multi-host)."""
  from langshift.generation.job import (  # pylint: disable=import-outside-toplevel
      JobConfig,
      read_outputs,
      run_generation_job,
  )

  barrier = barrier or (lambda tag: None)
  requests, outputs = os.path.join(out_dir, REQUESTS_FILE), os.path.join(out_dir, OUTPUTS_DIR)
  texts = record_texts(src, on_bad_record)
  if process_index == 0:
    os.makedirs(out_dir, exist_ok=True)
    if not os.path.exists(requests):
      _write_requests(requests, texts)
    elif _count_lines(requests) != len(texts):
      raise ValueError(
          f"{requests} holds {_count_lines(requests)} records but source {src.name} has "
          f"{len(texts)}: the source changed since this job began; use a new --out"
      )
  barrier("langshift score requests")
  scores_path = os.path.join(out_dir, SCORES_FILE)
  start, backend = time.perf_counter(), None
  if not os.path.exists(scores_path):
    backend = PerplexityBackend(_Lazy(make_scorer), name)
    cfg = JobConfig(
        shard_size=shard_size,
        batch_size=batch_size,
        output_field="score",
        worker_index=process_index,
        num_workers=process_count,
        generator_name=name,
        fault_counter=FAULT_COUNTER,
    )
    run_generation_job(requests, outputs, backend, GenerationOptions(), cfg)
  seconds = time.perf_counter() - start
  barrier("langshift score outputs")
  if process_index != 0:
    return {}
  if not os.path.exists(scores_path):
    _write_scores(outputs, scores_path, len(texts), read_outputs)
  scores = np.load(scores_path)
  finite = scores[np.isfinite(scores)]
  summary = dict(
      records=len(scores),
      unscored=int(len(scores) - len(finite)),
      median_perplexity=float(np.median(finite)) if len(finite) else math.inf,
      scores=scores_path,
  )
  for bound in (15, 30):
    summary[f"share_at_most_{bound}"] = float(np.mean(scores <= bound))
  if backend is not None and seconds > 0:
    summary.update(seconds=seconds, tokens_per_s=backend.tokens / seconds)
  return summary


class _Lazy:
  """Builds the scorer on first use: a rerun with nothing left loads no model."""

  def __init__(self, make):
    self._make, self._scorer = make, None

  def token_nll(self, texts):
    if self._scorer is None:
      self._scorer = self._make()
    return self._scorer.token_nll(texts)


def _write_scores(outputs: str, path: str, num_records: int, read_outputs) -> None:
  scores = np.full(num_records, np.nan)
  seen = np.zeros(num_records, bool)
  for record in read_outputs(outputs):
    i = int(record["id"])
    if seen[i]:
      raise RuntimeError(f"{outputs}: record {i} scored twice")
    seen[i] = True
    scores[i] = perplexity(record["score"]["nll"], record["score"]["tokens"])
  if not seen.all():
    raise RuntimeError(
        f"{outputs}: {int((~seen).sum())} of {num_records} records have no score (first: "
        f"{int(np.flatnonzero(~seen)[0])}); rerun the job to finish them"
    )
  tmp = path + ".tmp.npy"
  np.save(tmp, scores)
  os.replace(tmp, path)


def local_scorer(
    model_dir: str,
    *,
    max_length: int,
    rows_per_call: int = 4,
    dtype: str = "float32",
    num_devices: int = 0,
):
  """A `LocalScorer` on this process's devices only (each host holds its own replica), or on
  the first `num_devices` of them (0: all).

  `rows_per_call`: rows per forward pass, each packed with as many records' windows as fit. On
  CPU small calls win (the activations stay in cache): 4 rows scored the benchmark's documents
  1.4x faster than 16 (docs/benchmarks.md); an accelerator wants more.
  """
  # pylint: disable=import-outside-toplevel
  from langshift.checkpoints.hf_import import load_hf_model
  from langshift.evaluation.scoring import LocalScorer
  from langshift.parallel import sharding as sharding_lib
  from langshift.parallel.mesh import create_mesh, local_devices
  from langshift.tokenization.tokenizer import load_tokenizer

  mesh = create_mesh({"data": 1, "fsdp": -1, "tensor": 1}, devices=local_devices(num_devices))
  config, params = load_hf_model(
      model_dir, mesh=mesh, rules=sharding_lib.rules_from_config(None), dtype=dtype
  )
  return LocalScorer(
      config, params, load_tokenizer(model_dir), batch_size=rows_per_call, max_length=max_length
  )


def source_from_flags(path: str, fmt: str, text_field: str, qa_split: bool, **fields):
  """A resolved source config (the same schema as `data.sources.<name>`)."""
  data = data_config_lib.default_data_config()
  data.sources.corpus = data_config_lib.source_config(
      path=path, format=fmt, text_field=text_field, qa_split=qa_split, **fields
  )
  return data_config_lib.resolve_sources(data)[0]


def main(argv) -> None:
  del argv
  # pylint: disable=import-outside-toplevel
  from absl import flags

  from langshift.parallel.distributed import maybe_initialize_distributed

  maybe_initialize_distributed()
  import jax
  from jax.experimental import multihost_utils

  f = flags.FLAGS
  if not os.path.isdir(f.model):
    raise ValueError(f"--model={f.model!r}: give a local Hugging Face model directory")
  src = source_from_flags(f.source, f.format, f.text_field, f.qa_split)
  hosts = jax.process_count()
  summary = score_corpus(
      src,
      f.out,
      lambda: local_scorer(
          f.model, max_length=f.max_length, rows_per_call=f.rows_per_call, dtype=f.dtype
      ),
      batch_size=f.batch_size,
      shard_size=f.shard_size,
      on_bad_record=f.on_bad_record,
      name=os.path.basename(os.path.normpath(f.model)),
      barrier=(lambda tag: multihost_utils.sync_global_devices(tag)) if hosts > 1 else None,
      process_index=jax.process_index(),
      process_count=hosts,
  )
  if summary:
    print(json.dumps(summary))


if __name__ == "__main__":
  from absl import app, flags

  flags.DEFINE_string("model", None, "Local Hugging Face model directory (the scoring model).")
  flags.DEFINE_string("source", None, "Corpus file glob (the source's `path`).")
  flags.DEFINE_string("out", None, "Output folder: scores.npy, the job's shards and locks.")
  flags.DEFINE_enum("format", "jsonl", ["jsonl", "text", "parquet"], "Source format.")
  flags.DEFINE_string("text_field", "text", "Field holding each record's text.")
  flags.DEFINE_bool("qa_split", False, "Score each record's prompt and response as two samples.")
  flags.DEFINE_integer("max_length", 1024, "Rolling-window length in tokens.")
  flags.DEFINE_integer("batch_size", 16, "Records per durable batch (packed together).")
  flags.DEFINE_integer("rows_per_call", 4, "Rows per forward pass (CPU: 4; more on a GPU/TPU).")
  flags.DEFINE_integer("shard_size", 256, "Records per output shard (unit of resumption).")
  flags.DEFINE_enum("on_bad_record", "raise", ["raise", "skip"], "Malformed records.")
  flags.DEFINE_string("dtype", "float32", "Compute dtype.")
  flags.mark_flags_as_required(["model", "source", "out"])

  def _run(argv):
    from langshift import errors  # pylint: disable=import-outside-toplevel

    try:
      main(argv)
    except (ValueError, OSError, RuntimeError) as e:
      raise SystemExit(f"langshift.score: {errors.one_line(e)}") from None

  app.run(_run)
