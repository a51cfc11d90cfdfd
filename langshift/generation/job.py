"""Resumable batch generation over a JSONL of prompts, written in output shards.

Input record i belongs to shard i // shard_size. Records are keyed by their `id_field`, unique
over the input (checked before any request is sent). A shard is written to
`part-NNNNN.jsonl.inprogress` one flushed batch at a time and renamed to `part-NNNNN.jsonl`, in
input order, once it holds every record of the shard. On restart, complete shards are skipped and
an in-progress shard is cut back to its last whole line and continued with the records it lacks,
so a job killed at any point and restarted produces every record exactly once. Workers of a
multi-host job take shards round-robin (`worker_index`, `num_workers`) and never write the same
file.

A request that fails (see `outcomes.py`) writes no output: its record's id, the error and the
attempt count go to `failures-NNNNN.jsonl` next to the shard, the shard stays in progress, and a
rerun generates only the failed and missing records. A batch whose requests all failed with
transient errors (connection refused, timeouts, 5xx after retries) means the endpoint is down:
the job stops with one error line, writing nothing for that batch.

A record holds either `messages` (a conversation, answered through the chat template) or
`prompt` (raw text, continued). The output record is the input record plus `output_field` and
`generator` (the backend's name). Every input line is checked before any request is sent: a
line that is not a JSON object, lacks its id or both text fields, or holds a malformed
conversation is a one-line error naming `file:line`.

One writer per share of the output folder: each worker holds a lock file in it
(`langshift.workdir_lock.acquire_worker`), so a second job on the same folder fails naming the
first (host, pid, start time) instead of writing its shards twice; the workers of one multi-host
job lock their own shares and write side by side.
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import itertools
import json
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from absl import logging

from langshift import faults, workdir_lock
from langshift.generation.interface import GenerationOptions, TextGenerator
from langshift.generation.outcomes import (
    GenerationError,
    GenerationFailure,
    Outcome,
    chat_outcomes,
    complete_outcomes,
)

GENERATOR_FIELD = "generator"


@dataclasses.dataclass(frozen=True)
class JobConfig:
  shard_size: int = 1000
  batch_size: int = 32
  prompt_field: str = "prompt"
  messages_field: str = "messages"
  output_field: str = "completion"
  worker_index: int = 0
  num_workers: int = 1
  # Outputs are matched to inputs by this field, so it must be present and unique.
  id_field: str = "id"
  # What outputs record in `generator`; None takes the backend's `name` (or its class name).
  generator_name: str | None = None
  # The LANGSHIFT_FAULT counter that crash tests reach after each durable batch.
  fault_counter: str = "records"


class JobResult(int):
  """What one call did. The int value is `written`, the records it wrote (callers before failures
  were recorded read the result as that count); `failed` counts records whose request failed
  (recorded, retried by the next run), `incomplete_shards` this worker's shards left in progress."""

  written: int
  failed: int
  incomplete_shards: int

  def __new__(cls, written: int, failed: int = 0, incomplete_shards: int = 0):
    result = super().__new__(cls, written)
    result.written, result.failed, result.incomplete_shards = written, failed, incomplete_shards
    return result

  def __repr__(self) -> str:
    return (
        f"JobResult(written={self.written}, failed={self.failed}, "
        f"incomplete_shards={self.incomplete_shards})"
    )


class EndpointUnavailable(GenerationError):
  """Every request of a batch failed transiently: the backend is down, not the records bad."""


def shard_path(output_dir: str, shard: int) -> str:
  return os.path.join(output_dir, f"part-{shard:05d}.jsonl")


def failures_path(output_dir: str, shard: int) -> str:
  return os.path.join(output_dir, f"failures-{shard:05d}.jsonl")


def _record_lines(input_path: str) -> Iterator[tuple[int, str]]:
  """(1-based line number, line) of every non-blank input line."""
  with open(input_path, encoding="utf-8") as f:
    for number, line in enumerate(f, start=1):
      if line.strip():
        yield number, line


def _parse(input_path: str, number: int, line: str, cfg: JobConfig) -> dict:
  """The record on input line `number`, checked; a one-line error naming file:line if not."""
  where, id_field = f"{input_path}:{number}", cfg.id_field
  try:
    record = json.loads(line)
  except ValueError as e:
    raise ValueError(f"{where}: not a JSON record ({e})") from None
  if not isinstance(record, dict) or id_field not in record:
    raise ValueError(
        f"{where}: the record has no '{id_field}' field (JobConfig.id_field), "
        "which keys it in the outputs"
    )
  if not isinstance(record[id_field], (str, int)) or isinstance(record[id_field], bool):
    raise ValueError(
        f"{where}: '{id_field}' is {record[id_field]!r}; expected a string or an integer"
    )
  if cfg.messages_field in record:
    _check_messages(where, cfg.messages_field, record[cfg.messages_field])
  elif cfg.prompt_field not in record:
    raise ValueError(
        f"{where}: the record has neither '{cfg.messages_field}' (a conversation) nor "
        f"'{cfg.prompt_field}' (text to continue)"
    )
  elif not isinstance(record[cfg.prompt_field], str):
    raise ValueError(
        f"{where}: '{cfg.prompt_field}' is a {type(record[cfg.prompt_field]).__name__}; "
        "expected a string"
    )
  return record


def _check_messages(where: str, field: str, messages: Any) -> None:
  if not isinstance(messages, list) or not messages:
    raise ValueError(f"{where}: '{field}' is {messages!r:.80}; expected a non-empty list of turns")
  for i, turn in enumerate(messages):
    if (
        not isinstance(turn, dict)
        or not isinstance(turn.get("role"), str)
        or not isinstance(turn.get("content"), str)
    ):
      raise ValueError(
          f"{where}: '{field}'[{i}] is {turn!r:.80}; expected {{'role': str, 'content': str}}"
      )


def _check_ids(input_path: str, cfg: JobConfig) -> None:
  """One-line error at the first bad record, or one with the id of an earlier record."""
  id_field = cfg.id_field
  first_line: dict[Any, int] = {}
  for number, line in _record_lines(input_path):
    key = _parse(input_path, number, line, cfg)[id_field]
    if key in first_line:
      raise ValueError(
          f"{input_path}:{number}: '{id_field}' {key!r} repeats line {first_line[key]}; "
          "ids key the outputs and must be unique"
      )
    first_line[key] = number


def _read_shards(input_path: str, shard_size: int) -> Iterator[tuple[int, list[tuple[int, str]]]]:
  lines = _record_lines(input_path)
  for shard in itertools.count():
    chunk = list(itertools.islice(lines, shard_size))
    if not chunk:
      return
    yield shard, chunk


def _whole_lines(path: str) -> list[bytes]:
  """The complete lines of an append-only file; a torn last line (a kill mid-write) is cut."""
  if not os.path.exists(path):
    return []
  with open(path, "rb") as f:
    data = f.read()
  keep = data[: data.rfind(b"\n") + 1]
  if len(keep) != len(data):
    with open(path, "wb") as f:
      f.write(keep)
  return keep.splitlines()


def _generate_batch(
    generator: TextGenerator, records: Sequence[dict], options: GenerationOptions, cfg: JobConfig
) -> list[Outcome]:
  chats = [i for i, r in enumerate(records) if cfg.messages_field in r]
  plain = [i for i, r in enumerate(records) if cfg.messages_field not in r]
  outcomes: list[Outcome] = [""] * len(records)
  if chats:
    answers = chat_outcomes(generator, [records[i][cfg.messages_field] for i in chats], options)
    _place(outcomes, chats, answers)
  if plain:
    answers = complete_outcomes(generator, [records[i][cfg.prompt_field] for i in plain], options)
    _place(outcomes, plain, answers)
  return outcomes


def _place(outcomes: list[Outcome], indices: Sequence[int], answers: Sequence[Outcome]) -> None:
  if len(answers) != len(indices):
    raise RuntimeError(f"the generator answered {len(answers)} of {len(indices)} requests")
  for i, answer in zip(indices, answers):
    outcomes[i] = answer


def _append(path: str, lines: Sequence[str]) -> None:
  with open(path, "a", encoding="utf-8") as f:
    f.write("".join(lines))
    f.flush()
    os.fsync(f.fileno())


def _finalize(partial: str, final: str, order: Sequence[Any], id_field: str) -> None:
  """Renames a full shard to its final name, its records in input order."""
  with open(partial, encoding="utf-8") as f:
    lines = f.readlines()
  by_id = {json.loads(line)[id_field]: line for line in lines}
  if list(by_id) != list(order):
    # Records retried after a failure were appended last: put them back in input order.
    tmp = final + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      f.write("".join(by_id[key] for key in order))
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, final)
    os.remove(partial)
  else:
    os.replace(partial, final)


def _failure_line(record_id: Any, failure: GenerationFailure, runs: int, name: str) -> str:
  record = {
      "id": record_id,
      "error": str(failure),
      "attempts": failure.attempts,  # requests sent for it in the run that recorded this
      "runs_failed": runs,  # runs of the job that failed this record so far
      "failure": failure.to_json(),
      GENERATOR_FIELD: name,
  }
  return json.dumps(record, ensure_ascii=False) + "\n"


def run_generation_job(
    input_path: str,
    output_dir: str,
    generator: TextGenerator,
    options: GenerationOptions = GenerationOptions(),
    cfg: JobConfig = JobConfig(),
    on_batch_written: Callable[[int], None] | None = None,
) -> JobResult:
  """Generates for every input record not yet written; returns what this call wrote and failed.

  `generator` is any `TextGenerator`; one with `chat_outcomes`/`complete_outcomes` (the OpenAI
  client) can fail single requests without losing the batch. `on_batch_written(n)` runs after
  each durable batch, n being the records written so far (progress logging; tests use it to kill
  the job).
  Raises `EndpointUnavailable` when every request of a batch failed transiently.
  """
  _check_ids(input_path, cfg)
  name = cfg.generator_name or getattr(generator, "name", None) or type(generator).__name__
  with workdir_lock.acquire_worker(output_dir, cfg.worker_index, cfg.num_workers):
    return _run(input_path, output_dir, generator, options, cfg, on_batch_written, name)


def _run(input_path, output_dir, generator, options, cfg, on_batch_written, name) -> JobResult:
  written = failed = incomplete = 0
  for shard, lines in _read_shards(input_path, cfg.shard_size):
    if shard % cfg.num_workers != cfg.worker_index:
      continue
    final, fails = shard_path(output_dir, shard), failures_path(output_dir, shard)
    partial = final + ".inprogress"
    if os.path.exists(final):
      # Left by a kill between the final rename and the clean-up.
      for stale in (partial, fails):
        if os.path.exists(stale):
          os.remove(stale)
      continue
    records = [_parse(input_path, n, line, cfg) for n, line in lines]
    order = [r[cfg.id_field] for r in records]
    done = {json.loads(line)[cfg.id_field] for line in _whole_lines(partial)}
    if not done <= set(order):
      raise ValueError(
          f"{partial} holds ids that shard {shard} of {input_path} does not (e.g. "
          f"{sorted(map(str, done - set(order)))[0]!r}): the input changed since the job began"
      )
    earlier_failures = collections.Counter(json.loads(line)["id"] for line in _whole_lines(fails))
    pending = [(i, r) for i, r in enumerate(records) if r[cfg.id_field] not in done]
    for start in range(0, len(pending), cfg.batch_size):
      batch = [r for _, r in pending[start : start + cfg.batch_size]]
      # Seeds follow the record position, so sampled shards do not repeat one another.
      position = shard * cfg.shard_size + pending[start][0]
      batch_options = dataclasses.replace(options, seed=options.seed + position)
      outcomes = _generate_batch(generator, batch, batch_options, cfg)
      failures = [(r, o) for r, o in zip(batch, outcomes) if isinstance(o, GenerationFailure)]
      if len(failures) == len(batch) and all(o.transient for _, o in failures):
        raise EndpointUnavailable(
            f"generation job stopped, every request of a batch failed: {failures[0][1]} "
            f"({written} records written by this run are kept; rerun to continue)",
            [o for _, o in failures],
        )
      outputs = [
          json.dumps({**r, cfg.output_field: o, GENERATOR_FIELD: name}, ensure_ascii=False) + "\n"
          for r, o in zip(batch, outcomes)
          if not isinstance(o, GenerationFailure)
      ]
      _append(partial, outputs)
      if failures:
        _append(
            fails,
            [
                _failure_line(r[cfg.id_field], o, earlier_failures[r[cfg.id_field]] + 1, name)
                for r, o in failures
            ],
        )
      done.update(
          r[cfg.id_field] for r, o in zip(batch, outcomes) if not isinstance(o, GenerationFailure)
      )
      written += len(outputs)
      failed += len(failures)
      if on_batch_written is not None:
        on_batch_written(written)
      faults.fault_point(cfg.fault_counter, written)
    if len(done) == len(order):
      _finalize(partial, final, order, cfg.id_field)
      if os.path.exists(fails):
        os.remove(fails)
    else:
      incomplete += 1
  result = JobResult(written, failed, incomplete)
  logging.info(
      "generation job %s (worker %d of %d): wrote %d records, %d failed%s",
      output_dir,
      cfg.worker_index,
      cfg.num_workers,
      written,
      failed,
      f"; {incomplete} shards left in progress (failures-*.jsonl; rerun to retry)"
      if incomplete
      else "",
  )
  return result


def _read_jsonl_lines(path: str) -> list[dict]:
  with open(path, encoding="utf-8") as f:
    text = f.read()
  # An in-progress file may end in a torn line (a kill mid-write): only whole lines count.
  return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines() if line.strip()]


def read_outputs(output_dir: str, include_incomplete: bool = False) -> list[dict]:
  """All finished output records, in input order (complete shards only).

  With `include_incomplete`, records of shards still in progress (shards with failed requests,
  or being written) follow each complete shard's place, in the order they were written.
  """
  pattern = "part-*.jsonl*" if include_incomplete else "part-*.jsonl"
  records = []
  for path in sorted(glob.glob(os.path.join(output_dir, pattern))):
    if path.endswith(".jsonl") or path.endswith(".jsonl.inprogress"):
      if not (path.endswith(".inprogress") and os.path.exists(path[: -len(".inprogress")])):
        records.extend(_read_jsonl_lines(path))
  return records


def read_failures(output_dir: str, id_field: str = "id") -> list[dict]:
  """The latest recorded failure of each record that has no output yet, by shard."""
  latest: dict[Any, dict] = {}
  for path in sorted(glob.glob(os.path.join(output_dir, "failures-*.jsonl"))):
    partial = os.path.join(output_dir, os.path.basename(path).replace("failures-", "part-"))
    partial += ".inprogress"
    done = (
        {r.get(id_field) for r in _read_jsonl_lines(partial)} if os.path.exists(partial) else set()
    )
    for failure in _read_jsonl_lines(path):
      if failure["id"] not in done:
        latest[failure["id"]] = failure
  return list(latest.values())
