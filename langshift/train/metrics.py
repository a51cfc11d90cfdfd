"""Metrics sinks: JSON lines and TensorBoard event files (the progress line: progress.py).

`metrics.jsonl` holds each (step, metric) once however often a run is killed and resumed:
opening it for a run that starts at step S drops the rows after S (steps the run repeats), cuts
a torn last line (a write interrupted by a kill) and skips unreadable lines, each with a
warning; a metric written again for a step already in the file (the evaluation before the first
step of a resumed run, at the checkpoint's step) replaces the earlier value.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping

import jax
from absl import logging


class MetricsWriter:
  """Writes on process 0 only; every record carries the step. `resume_step`: the step the run
  starts from (rows after it are dropped, see above)."""

  def __init__(self, workdir: str, console=None, resume_step: int | None = None):
    self.enabled = jax.process_index() == 0
    self.console = console
    self._closed = False
    if not self.enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    self._path = os.path.join(workdir, "metrics.jsonl")
    self._resume_step = resume_step
    rows = repair_metrics(self._path, resume_step)
    # Metrics already recorded at the resume step: writing one again replaces it.
    self._at_resume = {k for r in rows if r["step"] == resume_step for k in r if k != "step"}
    self._jsonl = open(self._path, "a")
    try:
      from tensorboardX import SummaryWriter

      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
    except ImportError:  # TensorBoard is a convenience; the JSONL file is the record.
      self._tb = None

  def write(self, step: int, metrics: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    clean = {k: float(v) for k, v in metrics.items()}
    if step == self._resume_step:
      again = self._at_resume & set(clean)
      if again:
        self._jsonl.close()
        _remove_metrics(self._path, step, again)
        self._jsonl = open(self._path, "a")
      self._at_resume |= set(clean)
    self._jsonl.write(json.dumps({"step": int(step), **clean}) + "\n")
    self._jsonl.flush()
    if self._tb is not None:
      for k, v in clean.items():
        self._tb.add_scalar(k, v, int(step))
      self._tb.flush()

  def message(self, text: str) -> None:
    if self.enabled:
      console = self.console or sys.stdout  # the current stdout (a test may have replaced it)
      console.write("\n" + text + "\n")
      console.flush()

  def close(self) -> None:
    if self.enabled and not self._closed:
      self._closed = True
      self._jsonl.close()
      if self._tb is not None:
        self._tb.close()


def _rewrite(path: str, rows: list[dict]) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write("".join(json.dumps(r) + "\n" for r in rows))
  os.replace(tmp, path)  # whole or not at all


def repair_metrics(path: str, resume_step: int | None) -> list[dict]:
  """The rows of `path` a run starting at `resume_step` keeps, after rewriting the file to hold
  only them (see the module docstring)."""
  if not os.path.exists(path):
    return []
  with open(path, "rb") as f:
    data = f.read()
  changed = False
  if data and not data.endswith(b"\n"):
    cut = data.rfind(b"\n") + 1
    logging.warning(
        "%s: cut a torn last line (a write interrupted by a kill): %r", path, data[cut:][:80]
    )
    data, changed = data[:cut], True
  rows, dropped = [], 0
  for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
      if not isinstance(row, dict) or not isinstance(row.get("step"), int):
        raise ValueError("not a row with an integer step")
    except ValueError as e:
      logging.warning("%s:%d: skipped an unreadable line (%s)", path, number, e)
      changed = True
      continue
    if resume_step is not None and row["step"] > resume_step:
      dropped += 1
      continue
    rows.append(row)
  if dropped:
    logging.warning(
        "%s: dropped %d rows after step %d, the steps this run repeats", path, dropped, resume_step
    )
  if changed or dropped:
    _rewrite(path, rows)
  return rows


def _remove_metrics(path: str, step: int, keys: set[str]) -> None:
  """Drops `keys` from the rows of `step` (a row left with only its step goes)."""
  with open(path) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  kept = []
  for row in rows:
    if row["step"] == step:
      row = {k: v for k, v in row.items() if k not in keys}
      if len(row) == 1:
        continue
    kept.append(row)
  _rewrite(path, kept)
