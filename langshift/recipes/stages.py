"""Resumable stages of a recipe: a finished stage leaves a marker and is skipped on a rerun.

A stage writes into its own output folder and, when it returns, `<workdir>/stages/<name>.json`
records its summary, the inputs it was run with (every config value the stage reads, flattened
to dotted keys: its fingerprint) and a hash of them. A run killed mid-stage has no marker: the
rerun clears that stage's partial output and runs it again (a training stage instead resumes
from its own checkpoint). A marker whose inputs differ from the current config is an error, not a
silent reuse of outputs made for another experiment: the error names each changed key.

`config.stop_after=<stage>` ends the recipe once that stage has finished (or was found finished):
the runner raises `StoppedAfter`, which `recipe.run_recipe` returns as status "stopped".
Rerunning without it skips the finished stages and continues from the next one, so a user can
inspect a stage's output (a rewritten corpus, a new tokenizer) before paying for the training
after it.

Multi-host jobs: a host-side stage (tokenizer training, embedding surgery, export) runs on
process 0 only while the others wait at a barrier and then read its marker, so no two hosts
write one folder; a stage marked `collective` (training) runs on every process. The workdir
must be one filesystem all hosts see (NFS, a GCS FUSE mount), as for the checkpoints.

One recipe per workdir: the first stage that runs locks the workdir for the job
(`langshift.workdir_lock`, process 0 holding the file), so a second recipe on it fails naming
the first. A training stage locks its own sub-workdir, a generation stage its output folder:
different files, so the recipe never waits on itself. Reusing another workdir's finished stages
(`recorded`) only reads it and takes no lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import traceback
from collections.abc import Callable
from typing import Any

import jax
from jax.experimental import multihost_utils

from langshift import memory, workdir_lock


class StageInterrupted(Exception):
  """A stage stopped early and cleanly (e.g. preempted): no marker, the rerun continues it."""

  def __init__(self, stage: str, summary: dict[str, Any]):
    super().__init__(f"stage {stage} stopped early: {summary}")
    self.stage, self.summary = stage, summary


class StoppedAfter(Exception):
  """`config.stop_after` named a stage that has now finished: the recipe ends there, cleanly."""

  def __init__(self, stage: str, stages: dict[str, dict[str, Any]]):
    super().__init__(f"stopped after stage {stage} (config.stop_after)")
    self.stage, self.stages = stage, stages


class StageRunner:

  def __init__(
      self,
      workdir: str,
      log: Callable[[str], None] = print,
      *,
      stop_after: str = "",
      order: tuple[str, ...] = (),
  ):
    """`order`: the recipe's stages in the order they run, so that a `stop_after` stage that
    this config leaves out (e.g. no scoring without a perplexity bound) stops the recipe at the
    first stage after it instead of letting every later stage run."""
    self.workdir = workdir
    self.marker_dir = os.path.join(workdir, "stages")
    self.log = log if jax.process_index() == 0 else (lambda message: None)
    self.stop_after, self.order = stop_after, order
    self.finished: dict[str, dict[str, Any]] = {}  # stage -> summary, in the order they ended
    self._lock: workdir_lock.DirectoryLock | None = None  # released with the runner

  def _lock_workdir(self) -> None:
    if self._lock is None:
      self._lock = workdir_lock.acquire_for_job(self.workdir, purpose="recipe")

  def marker(self, name: str) -> str:
    return os.path.join(self.marker_dir, f"{name}.json")

  def failure(self, name: str) -> str:
    return os.path.join(self.marker_dir, f"{name}.failed")

  def run(
      self,
      name: str,
      output: str,
      body: Callable[[], dict[str, Any]],
      *,
      inputs: dict[str, Any],
      clear_partial: bool = True,
      collective: bool = False,
  ) -> dict[str, Any]:
    """`body()`'s summary, or the recorded one (with skipped=True) if the stage finished before.

    `clear_partial=False` keeps what a killed attempt left in `output` (a trainer resumes it).
    `collective`: every process runs `body` (it joins collectives); otherwise process 0 does.
    """
    self._stop_if_passed(name)
    self._lock_workdir()
    if collective or jax.process_count() == 1:
      summary = self._run_here(name, output, body, inputs, clear_partial, collective)
    else:
      summary = self._run_on_process_zero(name, output, body, inputs, clear_partial)
    return self.reached(name, summary)

  def _stop_if_passed(self, name: str) -> None:
    stop = self.stop_after
    if stop and stop not in self.finished and stop in self.order and name in self.order:
      if self.order.index(name) > self.order.index(stop):
        self.log(
            f"langshift: stage {stop} does not run under this config (config.stop_after="
            f"{stop!r}): stopping before stage {name}"
        )
        raise StoppedAfter(stop, dict(self.finished))

  def reached(self, name: str, summary: dict[str, Any]) -> dict[str, Any]:
    """Records that stage `name` has finished (here, before, or reused from another workdir);
    raises `StoppedAfter` on every process if it is `stop_after`."""
    self.finished[name] = summary
    if name == self.stop_after:
      self.log(
          f"langshift: stage {name}: {format_counts(summary)}; stopping here "
          f"(config.stop_after={name!r}); rerun without it to continue from the next stage"
      )
      raise StoppedAfter(name, dict(self.finished))
    return summary

  def _run_on_process_zero(self, name, output, body, inputs, clear_partial):
    if jax.process_index() == 0:
      if os.path.exists(self.failure(name)):
        os.remove(self.failure(name))
      try:
        summary = self._run_here(name, output, body, inputs, clear_partial, False)
      except BaseException:
        # Tell the waiting hosts, so that they fail too instead of hanging at the barrier.
        os.makedirs(self.marker_dir, exist_ok=True)
        with open(self.failure(name), "w") as f:
          f.write(traceback.format_exc())
        multihost_utils.sync_global_devices(f"langshift stage {name}")
        raise
      multihost_utils.sync_global_devices(f"langshift stage {name}")
      return summary
    multihost_utils.sync_global_devices(f"langshift stage {name}")
    if os.path.exists(self.failure(name)):
      raise RuntimeError(
          f"stage {name} failed on process 0; its traceback is in " f"{self.failure(name)}"
      )
    if not os.path.exists(self.marker(name)):
      raise RuntimeError(
          f"stage {name} finished on process 0 but {self.marker(name)} is not "
          f"visible on process {jax.process_index()}: the workdir must be a "
          "filesystem every host shares"
      )
    with open(self.marker(name)) as f:
      return {**json.load(f)["summary"], "ran_on_process": 0}

  def recorded(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """The summary of a stage finished in this workdir with exactly `inputs` (reusing another
    workdir's outputs); a missing or different marker is an error naming it."""
    inputs = json.loads(json.dumps(inputs))
    if not os.path.exists(self.marker(name)):
      raise ValueError(
          f"stage {name} has not finished in {os.path.dirname(self.marker_dir)} "
          f"(no {self.marker(name)}): run that workdir first"
      )
    with open(self.marker(name)) as f:
      done = json.load(f)
    if done["inputs"] != inputs:
      raise ValueError(
          f"stage {name} in {self.marker_dir} was run with another config: "
          f"{describe_changes(done['inputs'], inputs)}; it cannot be reused here"
      )
    self.log(f"langshift: stage {name}: reused from {os.path.dirname(self.marker_dir)}")
    return {**done["summary"], "skipped": True, "reused": True}

  def _run_here(self, name, output, body, inputs, clear_partial, collective):
    """Runs the stage in this process (on every process when collective: only process 0
    clears partial output, logs and writes the marker)."""
    inputs = json.loads(json.dumps(inputs))  # the form it takes in the marker, for comparison
    lead = jax.process_index() == 0
    if os.path.exists(self.marker(name)):
      with open(self.marker(name)) as f:
        done = json.load(f)
      if done["inputs"] != inputs:
        raise ValueError(
            f"stage {name} in {self.marker_dir} was run with another config: "
            f"{describe_changes(done['inputs'], inputs)}; use a new workdir, or "
            f"remove {output} and {self.marker(name)} to run the stage again"
        )
      self.log(f"langshift: stage {name}: done before, skipped ({output})")
      return {**done["summary"], "skipped": True}
    if clear_partial and os.path.exists(output) and lead:
      shutil.rmtree(output)
    if clear_partial and collective and jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"langshift stage {name} cleared")
    self.log(f"langshift: stage {name} -> {output}")
    summary = memory.run_stage(name, body)  # records its peak RSS, then releases what it held
    if lead:
      os.makedirs(self.marker_dir, exist_ok=True)
      tmp = self.marker(name) + ".tmp"
      with open(tmp, "w") as f:
        json.dump(
            {"fingerprint": fingerprint(inputs), "inputs": inputs, "summary": summary},
            f,
            indent=2,
            default=_plain,
        )
      os.replace(tmp, self.marker(name))  # a marker is whole or absent
    return {**summary, "skipped": False}


def fingerprint(inputs: dict[str, Any]) -> str:
  """A short stable hash of a stage's inputs (canonical JSON), for comparing workdirs at a
  glance; the marker keeps the inputs themselves so that a mismatch can name the keys."""
  canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=_plain)
  return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def describe_changes(recorded: dict[str, Any], current: dict[str, Any], most: int = 6) -> str:
  """`optimizer.learning_rate: 0.01 -> 0.02, train.seq_len: 32 -> 64` (on one line)."""
  missing = object()
  keys = sorted(
      k for k in set(recorded) | set(current) if recorded.get(k, missing) != current.get(k, missing)
  )
  shown = [f"{k}: {_show(recorded, k)} -> {_show(current, k)}" for k in keys[:most]]
  if len(keys) > most:
    shown.append(f"and {len(keys) - most} more")
  return ", ".join(shown)


def _show(values: dict[str, Any], key: str) -> str:
  return repr(values[key]) if key in values else "(absent)"


def _plain(value):
  """JSON for numpy scalars in summaries."""
  return value.item() if hasattr(value, "item") else str(value)


def format_counts(summary: dict[str, Any]) -> str:
  """A stage summary's numbers as one log line: `kept=15, seconds=3.2` ("done" if none)."""
  shown = {k: v for k, v in summary.items() if isinstance(v, (int, float)) and k != "skipped"}
  return (
      ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())
      or "done"
  )
