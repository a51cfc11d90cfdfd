"""Deterministic crash points, so that tests kill a job at an exact place instead of polling.

A job calls `fault_point(counter, value)` where a crash would matter (the trainer after each
step's checkpoint decision, the generation job after each durable batch). Nothing happens unless
the environment asks for it:

  LANGSHIFT_FAULT="kill@step=5"       SIGKILL this process once `step` reaches 5
  LANGSHIFT_FAULT="term@records=8"    SIGTERM (a preemption notice) once 8 records are written
  LANGSHIFT_FAULT="exit@step=3"       os._exit(75) there (no cleanup, no atexit handlers)

Several entries may be given separated by ",". The variable is read per process, so a
multi-host test can fault one host only. Each entry fires once per process.
"""

from __future__ import annotations

import os
import signal

ENV_VAR = "LANGSHIFT_FAULT"
ACTIONS = ("kill", "term", "exit")
EXIT_CODE = 75
_fired: set[str] = set()


def parse_faults(spec: str) -> list[tuple[str, str, int]]:
  """[(action, counter, threshold)] of a LANGSHIFT_FAULT value; a bad entry is an error."""
  faults = []
  for entry in filter(None, (e.strip() for e in spec.split(","))):
    action, _, rest = entry.partition("@")
    counter, _, value = rest.partition("=")
    if action not in ACTIONS or not counter or not value.isdigit():
      raise ValueError(
          f"{ENV_VAR}={spec!r}: entry {entry!r} is not <action>@<counter>=<n> with "
          f"action in {ACTIONS}"
      )
    faults.append((action, counter, int(value)))
  return faults


def fault_point(counter: str, value: int) -> None:
  """Crashes this process here if LANGSHIFT_FAULT names `counter` and `value` has reached it."""
  spec = os.environ.get(ENV_VAR)
  if not spec:
    return
  for action, name, threshold in parse_faults(spec):
    key = f"{action}@{name}={threshold}"
    if name != counter or value < threshold or key in _fired:
      continue
    _fired.add(key)
    if action == "kill":
      os.kill(os.getpid(), signal.SIGKILL)
    elif action == "term":
      os.kill(os.getpid(), signal.SIGTERM)
    else:
      os._exit(EXIT_CODE)  # pylint: disable=protected-access
