"""Resumable batch generation over a JSONL of prompts, written in output shards.

Input record i belongs to shard i // shard_size. A shard is written to `part-NNNNN.jsonl.inprogress`
one flushed batch at a time and renamed to `part-NNNNN.jsonl` once complete. On restart, complete
shards are skipped, the in-progress shard is cut back to its last whole line and continued, so a
job killed at any point and restarted produces every record exactly once. Workers of a multi-host
job take shards round-robin (`worker_index`, `num_workers`) and never write the same file.

A record holds either `messages` (a conversation, answered through the chat template) or
`prompt` (raw text, continued). The output record is the input record plus `output_field`.
"""

from __future__ import annotations

import dataclasses
import glob
import itertools
import json
import os
from collections.abc import Callable, Iterator, Sequence

from langshift import faults
from langshift.generation.interface import GenerationOptions, TextGenerator


@dataclasses.dataclass(frozen=True)
class JobConfig:
  shard_size: int = 1000
  batch_size: int = 32
  prompt_field: str = "prompt"
  messages_field: str = "messages"
  output_field: str = "completion"
  worker_index: int = 0
  num_workers: int = 1


def shard_path(output_dir: str, shard: int) -> str:
  return os.path.join(output_dir, f"part-{shard:05d}.jsonl")


def _read_shards(input_path: str, shard_size: int) -> Iterator[tuple[int, list[dict]]]:
  with open(input_path, encoding="utf-8") as f:
    lines = (line for line in f if line.strip())
    for shard in itertools.count():
      chunk = list(itertools.islice(lines, shard_size))
      if not chunk:
        return
      yield shard, chunk


def _recover_in_progress(path: str) -> int:
  """Cuts a partial shard back to its whole lines; returns how many records it holds."""
  if not os.path.exists(path):
    return 0
  with open(path, "rb") as f:
    data = f.read()
  keep = data[: data.rfind(b"\n") + 1]
  if len(keep) != len(data):
    with open(path, "wb") as f:
      f.write(keep)
  return keep.count(b"\n")


def _generate_batch(
    generator: TextGenerator, records: Sequence[dict], options: GenerationOptions, cfg: JobConfig
) -> list[str]:
  chats = [i for i, r in enumerate(records) if cfg.messages_field in r]
  plain = [i for i, r in enumerate(records) if cfg.messages_field not in r]
  outputs: list[str] = [""] * len(records)
  if chats:
    for i, text in zip(
        chats, generator.chat([records[i][cfg.messages_field] for i in chats], options)
    ):
      outputs[i] = text
  if plain:
    for i, text in zip(
        plain, generator.complete([records[i][cfg.prompt_field] for i in plain], options)
    ):
      outputs[i] = text
  return outputs


def run_generation_job(
    input_path: str,
    output_dir: str,
    generator: TextGenerator,
    options: GenerationOptions = GenerationOptions(),
    cfg: JobConfig = JobConfig(),
    on_batch_written: Callable[[int], None] | None = None,
) -> int:
  """Generates for every input record not yet written; returns how many records this call wrote.

  `on_batch_written(records_written_so_far)` runs after each durable batch (progress logging;
  tests use it to kill the job mid-run).
  """
  os.makedirs(output_dir, exist_ok=True)
  written = 0
  for shard, lines in _read_shards(input_path, cfg.shard_size):
    if shard % cfg.num_workers != cfg.worker_index:
      continue
    final = shard_path(output_dir, shard)
    if os.path.exists(final):
      continue
    partial = final + ".inprogress"
    done = _recover_in_progress(partial)
    records = [json.loads(line) for line in lines]
    with open(partial, "a", encoding="utf-8") as out:
      for start in range(done, len(records), cfg.batch_size):
        batch = records[start : start + cfg.batch_size]
        # Seeds follow the record position, so sampled shards do not repeat one another.
        batch_options = dataclasses.replace(
            options, seed=options.seed + shard * cfg.shard_size + start
        )
        texts = _generate_batch(generator, batch, batch_options, cfg)
        out.write(
            "".join(
                json.dumps({**r, cfg.output_field: t}, ensure_ascii=False) + "\n"
                for r, t in zip(batch, texts)
            )
        )
        out.flush()
        os.fsync(out.fileno())
        written += len(batch)
        if on_batch_written is not None:
          on_batch_written(written)
        faults.fault_point("records", written)
    os.replace(partial, final)
  return written


def read_outputs(output_dir: str) -> list[dict]:
  """All finished output records, in input order (complete shards only)."""
  records = []
  for path in sorted(glob.glob(os.path.join(output_dir, "part-*.jsonl"))):
    with open(path, encoding="utf-8") as f:
      records.extend(json.loads(line) for line in f if line.strip())
  return records
