"""One writer per directory: a lock file that names its holder, taken over when the holder died.

A training workdir, a recipe workdir and a generation job's output folder each have one writer.
The lock is a small JSON file (`langshift.lock`, or one per generation worker) created atomically
(`os.link` of a finished temporary file, the create-exclusive that NFS honours; `O_EXCL` where a
filesystem has no hard links) and holding the holder's host, pid, start time and purpose. A
second process meets it with a one-line `LockHeld` error naming that holder.

A lock whose holder is gone is taken over, never waited for:
  same host (hostname and boot id)  the pid is not running, or now belongs to a newer process
  another host                       no heartbeat for `STALE_AFTER_S`: the holder touches the file
                                     every `HEARTBEAT_S` from a daemon thread
The takeover itself is serialised by a `<lock>.takeover` directory (mkdir is atomic), and the
stale file is replaced only if it still holds what was judged stale, so two processes that both
find a stale lock cannot both win.

Locks are re-entrant within a process (a recipe stage that trains calls the engine, which locks
its own sub-workdir; a test may set up a run twice) and released when the handle is released or
garbage collected, and at exit. In a multi-host job `acquire_for_job` has process 0 take the lock
for the whole job and tells every process whether it got it.
"""

from __future__ import annotations

import dataclasses
import errno
import glob
import json
import os
import socket
import threading
import time
import uuid
import weakref
from typing import Any

from absl import logging

LOCK_NAME = "langshift.lock"
HEARTBEAT_S = 30.0
# Another host's lock is stale after this long without a heartbeat. Generous against NFS
# attribute caching (up to 60 s) and clock skew between hosts.
STALE_AFTER_S = 300.0
_TAKEOVER_STALE_S = 60.0  # a takeover takes milliseconds; an older `.takeover` was killed midway
_ATTEMPTS = 20


class LockHeld(RuntimeError):
  """The directory has a live writer; the message (one line) names it."""


@dataclasses.dataclass
class _Held:
  token: str
  count: int


_held: dict[str, _Held] = {}
_registry = threading.Lock()
_heartbeat: threading.Thread | None = None


def _boot_id() -> str:
  try:
    with open("/proc/sys/kernel/random/boot_id") as f:
      return f.read().strip()
  except OSError:
    return ""


def _process_start(pid: int) -> str:
  """The kernel's start time of `pid` (clock ticks since boot), "" where /proc is missing: with
  the boot id it tells a live holder from a newer process that reuses its pid."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      stat = f.read()
  except OSError:
    return ""
  # Field 22; the command name (field 2) is parenthesised and may hold spaces.
  return stat[stat.rfind(")") + 2 :].split()[19]


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, owned by someone else
    return True
  return True


def _this_process(purpose: str, extra: dict[str, Any]) -> dict[str, Any]:
  return {
      "host": socket.gethostname(),
      "pid": os.getpid(),
      "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
      "boot_id": _boot_id(),
      "process_start": _process_start(os.getpid()),
      "purpose": purpose,
      "token": uuid.uuid4().hex,
      **extra,
  }


def stale_reason(holder: dict[str, Any], age_s: float) -> str | None:
  """Why the holder of a lock is gone, or None while it may be alive (`age_s`: seconds since
  its last heartbeat)."""
  same_host = holder.get("host") == socket.gethostname() and holder.get("boot_id") == _boot_id()
  if same_host:
    pid = int(holder.get("pid", -1))
    if pid == os.getpid():  # not in this process's registry, so released: left behind
      return "left by this process"
    if pid <= 0 or not _alive(pid):
      return f"process {pid} is not running"
    if holder.get("process_start") and _process_start(pid) not in ("", holder["process_start"]):
      return f"pid {pid} now belongs to another process"
    return None
  if age_s > STALE_AFTER_S:
    return f"no heartbeat for {age_s:.0f} s"
  return None


def describe(path: str, holder: dict[str, Any] | None, age_s: float) -> str:
  """`<dir> is in use: host h, pid 12, started ...` on one line."""
  if holder is None:
    who = "a holder whose lock file cannot be read"
  else:
    who = f"host {holder.get('host')}, pid {holder.get('pid')}, started {holder.get('started')}" + (
        f" ({holder['purpose']})" if holder.get("purpose") else ""
    )
  return (
      f"{os.path.dirname(path)} is in use by another process: {who}; last heartbeat "
      f"{age_s:.0f} s ago (lock file {path}). Wait for it or stop it: the lock of a killed "
      f"process is taken over (same host: at once; another host: {STALE_AFTER_S:.0f} s after "
      "its last heartbeat)"
  )


def _read(path: str) -> tuple[bytes | None, dict[str, Any] | None, float]:
  """(raw bytes, parsed holder or None, seconds since the last heartbeat); raw None: no file."""
  try:
    with open(path, "rb") as f:
      raw = f.read()
    age = time.time() - os.stat(path).st_mtime
  except FileNotFoundError:
    return None, None, 0.0
  try:
    holder = json.loads(raw)
    holder = holder if isinstance(holder, dict) else None
  except ValueError:
    holder = None
  return raw, holder, age


def _create(path: str, record: dict[str, Any]) -> bool:
  """Writes the lock file if there is none; False if one exists."""
  data = json.dumps(record, indent=1).encode()
  tmp = f"{path}.{record['token']}.tmp"
  with open(tmp, "wb") as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
  try:
    os.link(tmp, path)  # atomic, fails if `path` exists: a whole lock file or none
    return True
  except FileExistsError:
    return False
  except OSError as e:
    if os.stat(tmp).st_nlink == 2:  # NFS: the link was made but its reply was lost
      return True
    if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
      raise
    try:  # no hard links on this filesystem (FUSE mounts): exclusive create
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      return False
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    return True
  finally:
    os.remove(tmp)


def _take_over(path: str, stale: bytes, record: dict[str, Any]) -> bool:
  """Replaces the stale lock file by ours unless another process is doing so or did it."""
  mutex = path + ".takeover"
  try:
    os.mkdir(mutex)
  except FileExistsError:
    try:
      if time.time() - os.stat(mutex).st_mtime > _TAKEOVER_STALE_S:
        os.rmdir(mutex)
    except OSError:
      pass
    return False
  try:
    raw, _, _ = _read(path)
    if raw is not None and raw != stale:
      return False  # taken over by another process in the meantime
    if raw is not None:
      os.remove(path)
    return _create(path, record)
  finally:
    os.rmdir(mutex)


class DirectoryLock:
  """A held lock; `release()` (or leaving the `with` block, or garbage collection) gives it
  back. Re-entrant acquisitions in one process share the file."""

  def __init__(self, path: str | None):
    self.path = path
    self._finalizer = weakref.finalize(self, _drop, path) if path else None

  def release(self) -> None:
    if self._finalizer is not None:
      self._finalizer()  # runs once

  def __enter__(self) -> DirectoryLock:
    return self

  def __exit__(self, *exc) -> None:
    self.release()


def acquire(
    directory: str, *, name: str = LOCK_NAME, purpose: str = "", **extra: Any
) -> DirectoryLock:
  """Takes `directory`'s lock (creating the directory); `LockHeld` if a live process has it."""
  path = os.path.join(os.path.abspath(directory), name)
  with _registry:
    if path in _held:
      _held[path].count += 1
      return DirectoryLock(path)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  record = _this_process(purpose, extra)
  for _ in range(_ATTEMPTS):
    if _create(path, record):
      break
    raw, holder, age = _read(path)
    if raw is None:
      continue  # released meanwhile
    reason = (
        stale_reason(holder, age)
        if holder
        else ("unreadable lock file" if age > _TAKEOVER_STALE_S else None)
    )
    if reason is None:
      raise LockHeld(describe(path, holder, age))
    if _take_over(path, raw, record):
      logging.warning("%s: took over the lock of %s (%s)", path, _who(holder), reason)
      break
    time.sleep(0.05)
  else:
    raw, holder, age = _read(path)
    raise LockHeld(describe(path, holder, age))
  with _registry:
    _held[path] = _Held(record["token"], 1)
  _start_heartbeat()
  return DirectoryLock(path)


def _who(holder: dict[str, Any] | None) -> str:
  if not holder:
    return "an unknown holder"
  return f"host {holder.get('host')} pid {holder.get('pid')} started {holder.get('started')}"


def _drop(path: str) -> None:
  with _registry:
    held = _held.get(path)
    if held is None:
      return
    held.count -= 1
    if held.count > 0:
      return
    del _held[path]
  _, holder, _ = _read(path)
  if holder is not None and holder.get("token") == held.token:
    try:
      os.remove(path)
    except FileNotFoundError:
      pass


def _beat() -> None:
  while True:
    time.sleep(HEARTBEAT_S)
    with _registry:
      held = {p: h.token for p, h in _held.items()}
    for path, token in held.items():
      _, holder, _ = _read(path)
      if holder is None or holder.get("token") != token:
        logging.error("%s: this process's lock was removed or taken over by another", path)
        continue
      try:
        os.utime(path)
      except OSError as e:
        logging.warning("%s: heartbeat failed: %s", path, e)


def _start_heartbeat() -> None:
  global _heartbeat
  with _registry:
    if _heartbeat is None:
      _heartbeat = threading.Thread(target=_beat, name="langshift-lock-heartbeat", daemon=True)
      _heartbeat.start()


def acquire_for_job(
    directory: str, *, name: str = LOCK_NAME, purpose: str = "", **extra: Any
) -> DirectoryLock:
  """The job's lock: process 0 takes it, and every process raises if it could not (a collective:
  every process of a multi-host job calls it at the same point)."""
  import jax  # pylint: disable=import-outside-toplevel

  if jax.process_count() == 1:
    return acquire(directory, name=name, purpose=purpose, **extra)
  import numpy as np  # pylint: disable=import-outside-toplevel
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

  lock, error = DirectoryLock(None), None
  if jax.process_index() == 0:
    try:
      lock = acquire(directory, name=name, purpose=purpose, **extra)
    except LockHeld as e:
      error = e
  ok = int(multihost_utils.broadcast_one_to_all(np.int32(error is None)))
  if error is not None:
    raise error
  if not ok:
    path = os.path.join(os.path.abspath(directory), name)
    _, holder, age = _read(path)
    raise LockHeld(f"process 0 of this job could not lock it: {describe(path, holder, age)}")
  return lock


def acquire_worker(directory: str, worker_index: int, num_workers: int) -> DirectoryLock:
  """Worker `worker_index`'s lock on a generation output folder. Workers of one job write
  disjoint shards into the same folder, so each locks its own share; a live worker of a job
  with another `num_workers` (whose shares overlap this one's) is refused as well."""
  lock = acquire(
      directory,
      name=f"langshift-worker-{worker_index:05d}.lock",
      purpose=f"generation worker {worker_index} of {num_workers}",
      num_workers=num_workers,
  )
  for path in sorted(
      glob.glob(os.path.join(os.path.abspath(directory), "langshift-worker-*.lock"))
  ):
    raw, holder, age = _read(path)
    if raw is None or holder is None or holder.get("num_workers") == num_workers:
      continue
    if stale_reason(holder, age) is None:
      lock.release()
      raise LockHeld(
          f"a job of {holder.get('num_workers')} workers writes here, this one has {num_workers}: "
          + describe(path, holder, age)
      )
  return lock
