"""SIGTERM as a preemption notice: the training loop checkpoints and stops at the next step."""

from __future__ import annotations

import signal

import jax


class Preemption:
  """SIGTERM sets `requested`; the loop saves a checkpoint and exits cleanly at the next step.

  Single process only. In a multi-host job, jax.distributed's own notifier catches SIGTERM and
  `manager.reached_preemption(step)` stops every host at the same step (even when only one was
  signalled); a Python handler would replace that notifier, and hosts would stop at different
  steps and hang in the collective save.
  """

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    if jax.process_count() > 1:
      return self
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread (e.g. a notebook worker): no handler
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
