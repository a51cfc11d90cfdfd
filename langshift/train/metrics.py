"""Metrics sinks: JSON lines and TensorBoard event files (the progress line: progress.py)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping

import jax


class MetricsWriter:
  """Writes on process 0 only; every record carries the step."""

  def __init__(self, workdir: str, console=sys.stdout):
    self.enabled = jax.process_index() == 0
    self.console = console
    if not self.enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
    try:
      from tensorboardX import SummaryWriter

      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
    except ImportError:  # TensorBoard is a convenience; the JSONL file is the record.
      self._tb = None

  def write(self, step: int, metrics: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    clean = {k: float(v) for k, v in metrics.items()}
    self._jsonl.write(json.dumps({"step": int(step), **clean}) + "\n")
    self._jsonl.flush()
    if self._tb is not None:
      for k, v in clean.items():
        self._tb.add_scalar(k, v, int(step))
      self._tb.flush()

  def message(self, text: str) -> None:
    if self.enabled:
      self.console.write("\n" + text + "\n")
      self.console.flush()

  def close(self) -> None:
    if self.enabled:
      self._jsonl.close()
      if self._tb is not None:
        self._tb.close()
