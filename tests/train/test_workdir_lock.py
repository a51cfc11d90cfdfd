"""One writer per directory: a live holder is named in a one-line error, a dead one's lock is
taken over (same host at once, another host after its heartbeat stops), re-entrant in one
process (a recipe's training stage locks a sub-workdir without waiting on the recipe)."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from langshift import workdir_lock
from langshift.workdir_lock import LockHeld

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# Takes the lock of argv[1] (a generation worker's when argv[2] is given), says so, and holds it
# until its stdin closes or it is killed.
_HOLDER = textwrap.dedent("""
    import sys
    from langshift import workdir_lock
    if len(sys.argv) > 2:
      lock = workdir_lock.acquire_worker(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
    else:
      lock = workdir_lock.acquire(sys.argv[1], purpose="test holder")
    print("locked", flush=True)
    sys.stdin.read()
""")


def start_holder(directory, *worker):
  """A process holding `directory`'s lock (returns once it holds it)."""
  proc = subprocess.Popen(
      [sys.executable, "-c", _HOLDER, str(directory), *map(str, worker)],
      cwd=REPO,
      env={**os.environ, "PYTHONPATH": REPO},
      stdin=subprocess.PIPE,
      stdout=subprocess.PIPE,
      text=True,
  )
  assert proc.stdout.readline().strip() == "locked"
  return proc


def kill(proc):
  proc.send_signal(signal.SIGKILL)
  proc.wait(timeout=30)


def test_a_second_process_is_refused_naming_the_holder_then_takes_over_once_it_is_killed(tmp_path):
  holder = start_holder(tmp_path)
  try:
    with pytest.raises(LockHeld) as e:
      workdir_lock.acquire(str(tmp_path))
    message = str(e.value)
    assert "\n" not in message
    assert f"host {socket.gethostname()}, pid {holder.pid}, started " in message
    assert "(test holder)" in message and str(tmp_path) in message
  finally:
    kill(holder)
  # The killed holder's file is still there: it is taken over, not waited for.
  assert os.path.exists(tmp_path / workdir_lock.LOCK_NAME)
  lock = workdir_lock.acquire(str(tmp_path))
  with open(tmp_path / workdir_lock.LOCK_NAME) as f:
    assert json.load(f)["pid"] == os.getpid()
  lock.release()
  assert not os.path.exists(tmp_path / workdir_lock.LOCK_NAME)


def _foreign_lock(directory, age_s, token="t"):
  """The lock file a process on another host wrote, last touched `age_s` ago."""
  path = os.path.join(directory, workdir_lock.LOCK_NAME)
  record = dict(host="other-host", pid=1, started="2030-01-01 00:00:00", boot_id="x", token=token)
  with open(path, "w") as f:
    json.dump(record, f)
  os.utime(path, (time.time() - age_s, time.time() - age_s))
  return path


def test_another_hosts_lock_is_held_while_it_beats_and_stale_after(tmp_path):
  _foreign_lock(tmp_path, age_s=10)
  with pytest.raises(LockHeld, match=r"host other-host, pid 1, started 2030-01-01 00:00:00"):
    workdir_lock.acquire(str(tmp_path))
  _foreign_lock(tmp_path, age_s=workdir_lock.STALE_AFTER_S + 60)
  with workdir_lock.acquire(str(tmp_path)):
    with open(tmp_path / workdir_lock.LOCK_NAME) as f:
      assert json.load(f)["host"] == socket.gethostname()


def test_a_stale_lock_is_replaced_only_if_unchanged_since_judged_stale(tmp_path):
  path = _foreign_lock(tmp_path, age_s=workdir_lock.STALE_AFTER_S + 60)
  with open(path, "rb") as f:
    stale = f.read()
  record = workdir_lock._this_process("a", {})  # pylint: disable=protected-access
  # Another process took it over between our read and our takeover: we must not replace it.
  _foreign_lock(tmp_path, age_s=0, token="another process's")
  assert not workdir_lock._take_over(path, stale, record)  # pylint: disable=protected-access
  with open(path) as f:
    assert json.load(f)["host"] == "other-host"
  # A takeover in progress elsewhere (its mutex directory exists) is not raced either.
  os.mkdir(path + ".takeover")
  assert not workdir_lock._take_over(path, open(path, "rb").read(), record)  # pylint: disable=protected-access
  os.rmdir(path + ".takeover")


def test_locks_are_reentrant_in_a_process_and_a_recipe_stage_locks_its_sub_workdir(tmp_path):
  from langshift.recipes.stages import StageRunner

  def stage():
    # What a training stage does: lock its own folder, and (as the engine may) the recipe's.
    with workdir_lock.acquire_for_job(str(tmp_path / "cpt")):
      with workdir_lock.acquire_for_job(str(tmp_path)):
        pass
    return {"ok": 1}

  runner = StageRunner(str(tmp_path), log=lambda m: None)
  assert runner.run("cpt", str(tmp_path / "cpt"), stage, inputs={}, clear_partial=False)["ok"] == 1
  assert os.path.exists(tmp_path / workdir_lock.LOCK_NAME)  # the recipe's, held by the runner
  assert not os.path.exists(tmp_path / "cpt" / workdir_lock.LOCK_NAME)
  # Another process cannot run a recipe in this workdir meanwhile.
  probe = subprocess.run(
      [
          sys.executable,
          "-c",
          "import sys; from langshift import workdir_lock; workdir_lock.acquire(sys.argv[1])",
          str(tmp_path),
      ],
      cwd=REPO,
      env={**os.environ, "PYTHONPATH": REPO},
      capture_output=True,
      text=True,
  )
  assert probe.returncode != 0 and f"pid {os.getpid()}" in probe.stderr.splitlines()[-1]
  del runner  # the runner's lock goes with it
  assert not os.path.exists(tmp_path / workdir_lock.LOCK_NAME)


def test_workers_of_one_job_lock_their_own_shares_and_another_job_shape_is_refused(tmp_path):
  holder = start_holder(tmp_path, 0, 2)
  try:
    with workdir_lock.acquire_worker(str(tmp_path), 1, 2):  # the same job's other worker
      pass
    with pytest.raises(LockHeld, match=rf"pid {holder.pid}"):
      workdir_lock.acquire_worker(str(tmp_path), 0, 2)  # a second job's worker 0
    # A job of 3 workers would write shards worker 0 of 2 owns, under other lock names.
    with pytest.raises(LockHeld, match=r"a job of 2 workers writes here, this one has 3"):
      workdir_lock.acquire_worker(str(tmp_path), 2, 3)
    assert not os.path.exists(tmp_path / "langshift-worker-00002.lock")
  finally:
    kill(holder)
