"""A run's outcome as data: `<workdir>/result.json` and the exit code of `langshift.main`.

Programs that drive runs (`langshift.sweep`, a scheduler's retry loop) read these, never the log:
a reworded log line cannot turn a preempted run into a finished one.

  status   "done"       every stage (or every training step) finished;      exit 0
           "stopped"    `config.stop_after` was reached: rerun without it;  exit 0
           "preempted"  SIGTERM (or the data of a multi-host peer) stopped the run after a
                        checkpoint: rerun the same command to continue;     exit 75 (EX_TEMPFAIL)
           "failed"     an error; `error` holds its one-line message;       exit 1

`result.json` also records `stopped_after`, the HF `export` (when there is one), `stages` (each
recipe stage's summary) and `metrics` (the numbers of the engine's summary, e.g.
`eval/perplexity_after`), and `peak_rss_gib`, the process's peak resident memory over the whole
run (`langshift.memory.process_peak_bytes`). It is written by process 0, atomically, at the end
of each run; a run killed outright writes none (a driver removes the previous one before it
starts a run).
A run refused for missing inputs writes nothing (its workdir stays as it was).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

from langshift import memory

RESULT_FILE = "result.json"
DONE, STOPPED, PREEMPTED, FAILED = "done", "stopped", "preempted", "failed"
# sysexits.h EX_TEMPFAIL: "try again later", the conventional code for a run to resume.
EXIT_PREEMPTED = 75
EXIT_CODES = {DONE: 0, STOPPED: 0, PREEMPTED: EXIT_PREEMPTED, FAILED: 1}


def status_of(result: Mapping[str, Any]) -> str:
  """A recipe's status ('done' | 'stopped' | 'preempted'); the engine's (recipe cpt) from its
  stop reason (a run whose data ran out finished too)."""
  if "status" in result:
    return str(result["status"])
  return PREEMPTED if result.get("stop_reason") == PREEMPTED else DONE


def result_record(
    result: Mapping[str, Any] | None, *, recipe: str, error: str | None = None
) -> dict[str, Any]:
  """What `result.json` holds for a run's return value (None and `error` for a failed run)."""
  # The process's peak RSS, whole run: `time -v` no longer sees it (langshift/memory.py).
  peak = round(memory.process_peak_bytes() / memory.GIB, 3)
  if result is None:
    return {
        "status": FAILED,
        "recipe": recipe,
        "error": error,
        "finished": _now(),
        "peak_rss_gib": peak,
    }
  record = {
      "status": status_of(result),
      "recipe": recipe,
      "stopped_after": result.get("stopped_after"),
      "export": result.get("export", result.get("hf_export")),
      "stages": result.get("stages", {}),
      "metrics": {k: v for k, v in result.items() if _is_number(v)},
      "finished": _now(),
      "peak_rss_gib": peak,
  }
  return record


def write_result(workdir: str, record: Mapping[str, Any]) -> str | None:
  """Writes `<workdir>/result.json` (process 0; atomically); returns its path."""
  if "jax" in sys.modules and sys.modules["jax"].process_index() != 0:
    return None
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, RESULT_FILE)
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(record, f, indent=1, sort_keys=True, default=str)
  os.replace(tmp, path)
  return path


def read_result(workdir: str) -> dict[str, Any] | None:
  """`<workdir>/result.json`, or None when the run wrote none (or it is unreadable)."""
  try:
    with open(os.path.join(workdir, RESULT_FILE)) as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError):
    return None


def _is_number(value) -> bool:
  return (
      isinstance(value, (int, float))
      and not isinstance(value, bool)
      and not (isinstance(value, float) and math.isnan(value))
  )


def _now() -> str:
  return time.strftime("%Y-%m-%dT%H:%M:%S%z")
