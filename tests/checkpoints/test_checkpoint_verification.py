"""Checkpoints a run resumes from are verified: a damaged newest one is reported on one line,
moved aside (not deleted) and the previous one restored; none restorable is an error, never a
restart from step 0. Temporary folders of killed saves go at the next start; a failing run
finishes its in-flight save; a second run on a locked workdir is refused naming the holder."""

import glob
import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "train"))
from test_workdir_lock import kill, start_holder  # noqa: E402
from train_testing import SyntheticBatches, tiny_config  # noqa: E402

from langshift.train.checkpointing import CheckpointError  # noqa: E402
from langshift.train.config import base_config  # noqa: E402
from langshift.train.trainer import train_and_evaluate  # noqa: E402
from langshift.workdir_lock import LockHeld  # noqa: E402


def _config(steps):
  config = tiny_config(steps=steps)
  config.optimizer.total_steps = 12  # one schedule for the first run and its continuations
  return config


def _train(workdir, steps, batches=None):
  config = _config(steps)
  batches = batches or SyntheticBatches(8, config.train.seq_len, config.model.vocab_size)
  return train_and_evaluate(config, str(workdir), train_iter=batches)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A workdir trained 8 steps: checkpoints 4 and 8."""
  workdir = tmp_path_factory.mktemp("trained") / "run"
  _train(workdir, 8)
  assert sorted(os.listdir(workdir / "checkpoints")) == ["4", "8"]
  return workdir


def _copy(trained, tmp_path):
  shutil.copytree(trained, tmp_path / "run")
  return tmp_path / "run"


def _largest_array_file(step_dir):
  files = glob.glob(str(step_dir / "state" / "**" / "d" / "*"), recursive=True)
  return max(files, key=os.path.getsize)


def _flip_bytes(step_dir):
  """Bytes changed after the save, in a way the file format itself does not notice."""
  path = _largest_array_file(step_dir)
  with open(path, "rb") as f:
    data = bytearray(f.read())
  for i in range(1000, 1100):
    data[i] ^= 0xFF
  with open(path, "wb") as f:
    f.write(bytes(data))


def _truncate(step_dir):
  path = _largest_array_file(step_dir)
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[: len(data) // 2])


def _delete(step_dir):
  os.remove(_largest_array_file(step_dir))


def _empty(step_dir):
  shutil.rmtree(step_dir)
  os.mkdir(step_dir)


@pytest.mark.parametrize("damage", [_flip_bytes, _truncate, _delete, _empty])
def test_a_damaged_newest_checkpoint_is_set_aside_and_the_previous_one_resumed(
    trained, tmp_path, capsys, damage
):
  workdir = _copy(trained, tmp_path)
  damage(workdir / "checkpoints" / "8")
  summary = _train(workdir, 12)
  assert summary["start_step"] == 4 and summary["step"] == 12
  (report,) = [
      line for line in capsys.readouterr().out.splitlines() if "cannot be restored" in line
  ]
  assert report.startswith(f"langshift: checkpoint {workdir}/checkpoints/8 cannot be restored (")
  assert report.endswith(f"moved to {workdir}/checkpoints/8.corrupt; resuming from step 4")
  assert os.path.isdir(workdir / "checkpoints" / "8.corrupt")  # kept for inspection
  assert sorted(os.listdir(workdir / "checkpoints")) == ["12", "8", "8.corrupt"]


def test_no_restorable_checkpoint_is_an_error_and_nothing_is_moved(trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  for step in ("4", "8"):
    _flip_bytes(workdir / "checkpoints" / step)
  with pytest.raises(CheckpointError) as e:
    _train(workdir, 12)
  message = str(e.value)
  assert "\n" not in message
  assert message.startswith(f"no checkpoint in {workdir}/checkpoints can be restored (step 8: ")
  assert "; step 4: 1 arrays differ from their recorded checksums" in message
  assert sorted(os.listdir(workdir / "checkpoints")) == ["4", "8"]


def test_keep_defaults_to_more_than_one_checkpoint():
  assert base_config().checkpoint.keep >= 2


def test_temporary_folders_of_killed_saves_are_removed_at_the_next_start(trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  left = workdir / "checkpoints" / "9.orbax-checkpoint-tmp-1234567"
  os.makedirs(left / "state")
  summary = _train(workdir, 10)
  assert summary["start_step"] == 8
  assert not os.path.exists(left)


class _FailsAt:
  """Synthetic batches until `index`, then an error (a bad record met mid-run)."""

  def __init__(self, config, index):
    self.inner = SyntheticBatches(8, config.train.seq_len, config.model.vocab_size)
    self.index = index

  def __iter__(self):
    return self

  def __next__(self):
    if self.inner.index == self.index:
      raise RuntimeError("bad record at batch 5")
    return next(self.inner)

  def get_state(self):
    return self.inner.get_state()

  def set_state(self, state):
    self.inner.set_state(state)


def test_a_failing_run_finishes_its_in_flight_save_and_raises_its_own_error(tmp_path):
  config = _config(8)
  config.checkpoint.update(every_steps=1, async_save=True)
  with pytest.raises(RuntimeError, match="^bad record at batch 5$"):
    train_and_evaluate(config, str(tmp_path), train_iter=_FailsAt(config, 5))
  # Step 5 was being saved in the background when the error came: it is complete, not left
  # half-written in a temporary folder.
  names = os.listdir(tmp_path / "checkpoints")
  assert "5" in names and not [n for n in names if "tmp" in n]
  summary = _train(tmp_path, 6)
  assert summary["start_step"] == 5


def test_a_second_run_on_a_locked_workdir_is_refused_before_writing(trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  holder = start_holder(workdir)
  try:
    with pytest.raises(
        LockHeld, match=rf"^{workdir} is in use by another process: .* pid {holder.pid}"
    ):
      _train(workdir, 12)
    assert sorted(os.listdir(workdir / "checkpoints")) == ["4", "8"]
  finally:
    kill(holder)
  assert _train(workdir, 10)["start_step"] == 8  # the killed holder's lock is taken over
