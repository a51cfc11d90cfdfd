"""The engine end to end on a tiny model: learning, freezing, accumulation, resume, mesh."""

import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from train_testing import SyntheticBatches, read_metrics, tiny_config

from langshift.train import checkpointing, optimizer
from langshift.train.trainer import train_and_evaluate


def _run(config, workdir, **iter_kwargs):
  it = SyntheticBatches(
      config.train.global_batch_size, config.train.seq_len, config.model.vocab_size, **iter_kwargs
  )
  return train_and_evaluate(config, str(workdir), train_iter=it)


def _final_params(workdir):
  mngr = checkpointing.make_manager(str(workdir), 1, 2, False)
  restored = mngr.restore(
      mngr.latest_step(), args=ocp.args.Composite(state=ocp.args.StandardRestore())
  )
  return restored["state"]


def test_loss_falls_and_metrics_are_written(tmp_path):
  config = tiny_config(steps=30)
  config.optimizer.learning_rate = 1e-2
  summary = _run(config, tmp_path)
  rows = [r for r in read_metrics(tmp_path) if "train/loss" in r]
  assert len(rows) == 30
  assert rows[-1]["train/loss"] < 0.5 * rows[0]["train/loss"]
  for key in (
      "train/grad_norm",
      "train/lr",
      "train/tokens_seen",
      "perf/tokens_per_s",
      "perf/step_time_s",
      "perf/mfu",
  ):
    assert key in rows[-1]
  assert rows[-1]["train/tokens_seen"] == 30 * 8 * 16
  assert os.listdir(tmp_path / "tensorboard")
  assert summary["step"] == 30 and summary["stop_reason"] == "completed"


def test_embeddings_preset_freezes_everything_else(tmp_path):
  config = tiny_config(steps=5, trainable="embeddings")
  config.checkpoint.every_steps = 100
  _run(config, tmp_path / "a")
  # The same init (seed) trained 0 steps gives the starting params.
  config0 = tiny_config(steps=0)
  _run(config0, tmp_path / "b")
  after, before = _final_params(tmp_path / "a"), _final_params(tmp_path / "b")
  flat_a = jax.tree_util.tree_flatten_with_path(after["params"])[0]
  flat_b = dict(jax.tree_util.tree_flatten_with_path(before["params"])[0])
  changed = set()
  for path, leaf in flat_a:
    name = optimizer.param_path(path)
    if np.array_equal(np.asarray(leaf), np.asarray(flat_b[path])):
      assert not name.startswith(("embed_tokens", "lm_head")), name
    else:
      changed.add(name)
  assert changed == {"embed_tokens/embedding", "lm_head/kernel"}
  # Optimizer state: Adam moments exist for the two trainable matrices only.
  moments = [x for x in jax.tree.leaves(after["opt_state"]) if np.ndim(x) > 0]
  assert sorted(x.shape for x in moments) == sorted([(64, 32), (64, 32), (32, 64), (32, 64)])


def _assert_same_training(dir_a, dir_b, atol, rtol):
  """Same per-step losses and the same final params in two runs' workdirs."""
  a, b = _final_params(dir_a), _final_params(dir_b)
  for x, y in zip(jax.tree.leaves(a["params"]), jax.tree.leaves(b["params"])):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=rtol)
  la = {r["step"]: r["train/loss"] for r in read_metrics(dir_a) if "train/loss" in r}
  lb = {r["step"]: r["train/loss"] for r in read_metrics(dir_b) if "train/loss" in r}
  assert sorted(la) == sorted(lb)
  np.testing.assert_allclose([lb[s] for s in sorted(la)], [la[s] for s in sorted(la)], rtol=rtol)


def test_gradient_accumulation_equals_large_batch(tmp_path):
  big = tiny_config(steps=2, global_batch_size=16)
  acc = tiny_config(steps=2, global_batch_size=16, microbatches=4)
  _run(big, tmp_path / "big")
  _run(acc, tmp_path / "acc")
  _assert_same_training(tmp_path / "big", tmp_path / "acc", atol=2e-6, rtol=1e-5)


def test_preempted_and_resumed_run_equals_uninterrupted(tmp_path):
  config = tiny_config(steps=8)
  _run(config, tmp_path / "straight")
  # SIGTERM arrives while batch 5 is being fetched: the run stops after step 5, saving it.
  summary = _run(config, tmp_path / "resumed", sigterm_at=4)
  assert summary["stop_reason"] == "preempted" and summary["step"] == 5
  summary = _run(config, tmp_path / "resumed")  # same command again: resumes from step 5
  assert summary["start_step"] == 5 and summary["step"] == 8
  straight = [r["step"] for r in read_metrics(tmp_path / "straight") if "train/loss" in r]
  resumed = [r["step"] for r in read_metrics(tmp_path / "resumed") if "train/loss" in r]
  assert sorted(resumed) == list(range(1, 9)) == sorted(straight)
  _assert_same_training(tmp_path / "straight", tmp_path / "resumed", atol=1e-7, rtol=1e-6)


def test_train_step_on_8_device_mesh_equals_single_device(tmp_path):
  single = tiny_config(steps=3)
  meshed = tiny_config(steps=3)
  meshed.mesh.num_devices = 0
  meshed.mesh.ici.update(data=2, fsdp=2, tensor=2)
  _run(single, tmp_path / "single")
  _run(meshed, tmp_path / "mesh")
  _assert_same_training(tmp_path / "single", tmp_path / "mesh", atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("every_steps", [100, 1])
def test_nonfinite_loss_stops_with_last_good_state_saved(tmp_path, every_steps):
  config = tiny_config(steps=6)
  config.optimizer.learning_rate = 1e30  # explodes within a couple of steps
  config.optimizer.grad_clip_norm = 0.0
  # every_steps=1: the step is checkpointed before its loss is read; the error is still the
  # non-finite loss (it was orbax's "Checkpoint for step 2 already exists" in front of it).
  config.checkpoint.update(every_steps=every_steps, async_save=False)
  with pytest.raises(FloatingPointError, match="non-finite") as raised:
    _run(config, tmp_path)
  assert raised.value.__context__ is None
  state = _final_params(tmp_path)
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state["params"]))


def test_checkpoint_holds_data_state_and_config(tmp_path):
  config = tiny_config(steps=4)
  _run(config, tmp_path)
  step_dir = tmp_path / "checkpoints" / "4"
  assert {"state", "data", "config"} <= {p.name for p in step_dir.iterdir()}
  mngr = checkpointing.make_manager(str(tmp_path), 1, 2, False)
  restored = mngr.restore(
      4,
      args=ocp.args.Composite(
          data=checkpointing.IteratorStateRestore(), config=ocp.args.JsonRestore()
      ),
  )
  assert restored["data"] == {"index": 4}
  # One iterator state per process (grain's file layout): hosts read different shards.
  assert json.loads((step_dir / "data" / "process_0-of-1.json").read_text()) == {"index": 4}
  assert restored["config"]["train"]["steps"] == 4


def test_bf16_compute_keeps_fp32_master_weights(tmp_path):
  config = tiny_config(steps=10)
  config.model.dtype = "bfloat16"
  config.optimizer.learning_rate = 1e-2
  _run(config, tmp_path)
  state = _final_params(tmp_path)
  assert {np.asarray(x).dtype for x in jax.tree.leaves(state["params"])} == {np.dtype("float32")}
  losses = [r["train/loss"] for r in read_metrics(tmp_path) if "train/loss" in r]
  assert losses[-1] < 0.8 * losses[0]


def test_iterator_state_is_per_process_and_reads_single_process_legacy_files(tmp_path, monkeypatch):
  from etils import epath

  handler = checkpointing.IteratorStateHandler()
  legacy = epath.Path(tmp_path)
  (legacy / "metadata").write_text(json.dumps({"index": 3}))  # written by JsonSave before
  assert handler.restore(legacy) == {"index": 3}
  monkeypatch.setattr(checkpointing.jax, "process_count", lambda: 2)
  monkeypatch.setattr(checkpointing.jax, "process_index", lambda: 1)
  with pytest.raises(
      ValueError, match=r"no input-iterator state for process 1 of 2 \(found \[\]\)"
  ):
    handler.restore(legacy)
  (legacy / "process_1-of-2.json").write_text(json.dumps({"index": 9}))
  assert handler.restore(legacy) == {"index": 9}
