"""Resuming compares the config stored in the checkpoint with the current one: a change of
optimizer, schedule length or architecture is a one-line error listing the keys (nothing
overwritten), `resume_policy=new_config` continues anyway, and operational changes pass."""

import json
import shutil

import pytest
from train_testing import SyntheticBatches, tiny_config

from langshift.train.checkpointing import CheckpointError
from langshift.train.trainer import train_and_evaluate


def _run(config, workdir):
  batches = SyntheticBatches(8, config.train.seq_len, config.model.vocab_size)
  return train_and_evaluate(config, str(workdir), train_iter=batches)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
  """A workdir trained 4 steps with tiny_config's defaults (train.steps sets the schedule)."""
  workdir = tmp_path_factory.mktemp("resume") / "run"
  _run(tiny_config(steps=4), workdir)
  return workdir


def _config_json(workdir):
  with open(workdir / "config.json") as f:
    return json.load(f)


def test_another_learning_rate_is_refused_listing_the_key(first_run):
  config = tiny_config(steps=4)
  config.optimizer.learning_rate = 1e-2
  with pytest.raises(ValueError) as e:
    _run(config, first_run)
  message = str(e.value)
  assert "\n" not in message
  assert message.startswith(f"{first_run}/checkpoints/4 was written with another config: ")
  assert "optimizer.learning_rate: 0.003 -> 0.01; rerun with --config.resume_policy=new_config" in (
      message
  )
  assert _config_json(first_run)["optimizer"]["learning_rate"] == 0.003  # not overwritten


def test_a_longer_run_that_reshapes_the_schedule_needs_the_policy(first_run, tmp_path):
  config = tiny_config(steps=6)
  with pytest.raises(ValueError, match=r"train\.steps: 4 -> 6 \(the schedule's length"):
    _run(config, first_run)
  shutil.copytree(first_run, tmp_path / "run")
  # Operational changes, and the same schedule length given explicitly, resume as they are.
  same = tiny_config(steps=4, log_every=2)
  same.checkpoint.every_steps = 2
  same.optimizer.total_steps = 4
  assert _run(same, tmp_path / "run")["start_step"] == 4
  config.resume_policy = "new_config"
  summary = _run(config, tmp_path / "run")
  assert summary["start_step"] == 4 and summary["step"] == 6


def test_another_architecture_is_a_config_error_not_an_orbax_shape_dump(first_run):
  config = tiny_config(steps=4)
  config.model.hidden_size = 64
  with pytest.raises(ValueError, match=r"model\.hidden_size: 32 -> 64"):
    _run(config, first_run)
  config.resume_policy = "new_config"
  with pytest.raises(
      CheckpointError,
      match=r"checkpoints/4 holds params/embed_tokens/embedding of shape \(64, 32\), this run's "
      r"model needs \(64, 64\)$",
  ):
    _run(config, first_run)
