"""Throughput over a window of steps, and the console progress line.

FLOP convention for `perf/mfu` (langshift/train/flops.py): 6·N per token for the weights plus
causal attention counted at half; the peak is per device times the device count.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Mapping

import jax


def _now() -> float:
  return time.perf_counter()


class Throughput:
  """Tokens and steps since the last report; `report()` gives rates over that window.

  Only training counts: the window starts at `restart()` (after the evaluations that run before
  the first step) and time spent inside `excluded()` (evaluations, exports in the loop) is taken
  out of it. `clock` (seconds; default `time.perf_counter`) is injectable for tests.
  """

  def __init__(self, flops_per_token: float, peak_flops: float, clock=None):
    self.flops_per_token, self.peak_flops = flops_per_token, peak_flops
    self.tokens_seen = 0.0
    self._clock = clock or _now
    self.restart()

  def restart(self):
    """A new window from now, with nothing in it."""
    self._tokens, self._steps, self._t0, self._excluded = 0.0, 0, self._clock(), 0.0

  def add_step(self, tokens: float) -> None:
    self.tokens_seen += tokens
    self._tokens += tokens
    self._steps += 1

  @contextlib.contextmanager
  def excluded(self):
    """Work inside does not count toward the window's time."""
    t0 = self._clock()
    try:
      yield
    finally:
      self._excluded += self._clock() - t0

  def report(self) -> dict[str, float]:
    """Rates since the previous report (then a new window starts)."""
    dt = self._clock() - self._t0 - self._excluded
    tokens_per_s = self._tokens / dt if dt > 0 else 0.0
    out = {
        "train/tokens_seen": self.tokens_seen,
        "perf/step_time_s": dt / max(self._steps, 1),
        "perf/tokens_per_s": tokens_per_s,
        "perf/mfu": tokens_per_s * self.flops_per_token / self.peak_flops
        if self.peak_flops
        else 0.0,
    }
    self.restart()
    return out


class ProgressBar:
  """`[######..........] 120/1000 loss=2.31 ...` rewritten in place, on process 0 only."""

  SHOWN = ("train/loss", "train/grad_norm", "perf/tokens_per_s", "perf/mfu")

  def __init__(self, total_steps: int, console=sys.stdout, width: int = 24):
    self.total_steps, self.console, self.width = total_steps, console, width
    self.enabled = jax.process_index() == 0
    self._t0 = time.time()

  def update(self, step: int, metrics: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    filled = int(self.width * step / max(self.total_steps, 1))
    bar = "#" * filled + "." * (self.width - filled)
    shown = " ".join(f"{k.split('/')[-1]}={metrics[k]:.4g}" for k in self.SHOWN if k in metrics)
    self.console.write(
        f"\r[{bar}] {step}/{self.total_steps} {shown} " f"({time.time() - self._t0:.0f}s)"
    )
    self.console.flush()
