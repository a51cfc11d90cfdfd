"""Host memory of this process: peak RSS per phase, and giving back what a finished stage held.

A free Colab runtime has about 12.7 GB of RAM, so every CPU variant must stay under 10 GiB peak
resident set size (RSS) with room for the notebook kernel (docs/benchmarks.md, "Host memory").

Peaks are Linux's own: `VmHWM` in /proc/self/status is the process's high-water mark of `VmRSS`,
and writing "5" to /proc/self/clear_refs resets it to the current RSS, so a phase's peak is
the high-water mark read when it ends, taken after a reset when it began. Phases nest: before
any reset the mark is folded into every open phase, so an outer phase keeps the peaks of the
phases inside it. Where the reset is not allowed (or outside Linux) a phase's peak is the
process's peak so far, an upper bound, and `Phase.exact` says so.

The reset is process-wide: once a phase has begun, the kernel's own peak (`VmHWM`, and the
`ru_maxrss` that `/usr/bin/time -v` and `resource.getrusage` report) covers only the time since
the last reset. `process_peak_bytes()` is the process's peak since it started, resets included;
`langshift.main` logs it and `result.json` records it (`peak_rss_gib`). Measure a langshift run
with it (or `python -m langshift.bench.host_memory`), not with `time -v`.

`release()` ends a stage: it drops the compiled programs and jitted-function caches the stage
left behind (they keep buffers and executables alive across stages), collects garbage and
returns freed heap pages to the kernel (glibc keeps freed blocks in its arenas otherwise, so RSS
would not fall after the stage's model is gone).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import gc
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

GIB = 2.0**30
_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"


def _status_kib(field: str) -> int | None:
  try:
    with open(_STATUS) as f:
      match = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.MULTILINE)
  except OSError:
    return None
  return int(match.group(1)) if match else None


def rss_bytes() -> int:
  """The resident set size now (0 where /proc is unavailable)."""
  return (_status_kib("VmRSS") or 0) * 1024


def peak_rss_bytes() -> int:
  """The high-water mark of the resident set size since the start or the last reset."""
  return (_status_kib("VmHWM") or 0) * 1024


def reset_peak() -> bool:
  """Resets the high-water mark to the current RSS; False where the kernel does not allow it."""
  try:
    with open(_CLEAR_REFS, "w") as f:
      f.write("5")
  except OSError:
    return False
  return True


@dataclasses.dataclass
class Phase:
  """A named span of the run: its peak RSS, its RSS at the end and its wall time."""

  name: str
  peak_bytes: int = 0
  start_bytes: int = 0
  end_bytes: int = 0
  seconds: float = 0.0
  exact: bool = True  # False: the peak is the process's peak so far (no reset allowed)
  depth: int = 0

  @property
  def peak_gib(self) -> float:
    return self.peak_bytes / GIB

  def record(self) -> dict[str, Any]:
    return {
        "phase": self.name,
        "depth": self.depth,
        "peak_rss_gib": round(self.peak_gib, 3),
        "start_rss_gib": round(self.start_bytes / GIB, 3),
        "end_rss_gib": round(self.end_bytes / GIB, 3),
        "seconds": round(self.seconds, 1),
        "exact": self.exact,
    }


class PhaseLog:
  """The phases of this process, in the order they ended (a benchmark reads `phases`)."""

  def __init__(self):
    self.phases: list[Phase] = []
    self._open: list[Phase] = []
    self.before_resets = 0  # the highest mark read before a reset: the kernel's forgets it

  def _fold(self) -> None:
    peak = peak_rss_bytes()
    self.before_resets = max(self.before_resets, peak)
    for p in self._open:
      p.peak_bytes = max(p.peak_bytes, peak)

  @contextlib.contextmanager
  def phase(self, name: str) -> Iterator[Phase]:
    self._fold()  # the enclosing phases keep what they reached before the reset
    p = Phase(name, depth=len(self._open), start_bytes=rss_bytes())
    p.exact = reset_peak()
    self._open.append(p)
    start = time.perf_counter()
    try:
      yield p
    finally:
      self._fold()
      self._open.remove(p)
      p.seconds = time.perf_counter() - start
      p.end_bytes = rss_bytes()
      self.phases.append(p)


LOG = PhaseLog()


def phase(name: str) -> contextlib.AbstractContextManager[Phase]:
  """`with memory.phase("training"):` records that span's peak RSS in `memory.LOG`."""
  return LOG.phase(name)


def process_peak_bytes() -> int:
  """This process's peak RSS since it started, across the phases' resets of the kernel's mark."""
  return max(LOG.before_resets, peak_rss_bytes())


def trim_heap() -> bool:
  """Returns the heap's free pages to the kernel (glibc's malloc_trim); False elsewhere."""
  try:
    return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
  except (OSError, AttributeError):
    return False


# Caches of jitted functions keyed on a model's config: each entry keeps its compiled programs
# (and the constants folded into them) until the process ends unless a stage end clears it.
_FUNCTION_CACHES = (
    "langshift.generation.decode:make_generate_fn",
    "langshift.generation.decode:make_engine",
    "langshift.evaluation.scoring:_packed_logprobs_fn",
    "langshift.evaluation.scoring:_next_token_logprobs_fn",
)


def clear_compiled() -> None:
  """Drops JAX's compiled programs and the jitted functions cached by the engine's modules."""
  import sys  # pylint: disable=import-outside-toplevel

  import jax  # pylint: disable=import-outside-toplevel

  for entry in _FUNCTION_CACHES:
    module_name, function = entry.split(":")
    module = sys.modules.get(module_name)  # not imported: nothing cached
    cached = getattr(module, function, None)
    if cached is not None and hasattr(cached, "cache_clear"):
      cached.cache_clear()
  jax.clear_caches()


def release() -> None:
  """What a finished stage no longer needs goes back to the system: its compiled programs, its
  unreachable objects (a stage's models and generators, once its frames are gone) and the heap
  pages they occupied."""
  clear_compiled()
  gc.collect()
  trim_heap()


def run_stage(name: str, body: Callable[[], dict[str, Any]]) -> dict[str, Any]:
  """`body()`'s summary with its peak RSS (`peak_rss_gib`), the memory it held released."""
  with phase(f"stage {name}") as p:
    summary = body()
  release()
  return {**summary, "peak_rss_gib": round(p.peak_gib, 3)}
