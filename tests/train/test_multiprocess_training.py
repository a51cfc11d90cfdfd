"""Training as a two-host job (two JAX processes, 4 CPU devices each, one 8-device mesh):
each host's input-iterator state is checkpointed and restored as its own, so a resumed run
equals an uninterrupted one; SIGTERM on one host stops both at the same step with a
checkpoint, and the rerun continues from it."""

import json
import os
import shutil
import sys

import multiprocess_testing
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "recipes"))
import test_lep_end_to_end as lep_e2e  # noqa: E402  (tiny models and a Russian corpus)

from langshift import run_result  # noqa: E402
from langshift.checkpoints.safetensors_io import SafetensorsCheckpoint  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  return lep_e2e.write_inputs(tmp_path_factory.mktemp("multiprocess_training"))


def _args(setup, workdir, steps, every):
  # The LEP test's tiny config as plain continual pre-training of its base model.
  return [
      sys.executable,
      "-m",
      "langshift.main",
      "--config=experiments/lep_ru.py:tiny",
      "--config.recipe=cpt",
      f"--config.init_from_hf={setup['base']}",
      "--config.train.trainable=all",
      f"--workdir={workdir}",
      f"--config.train.steps={steps}",
      f"--config.checkpoint.every_steps={every}",
      "--config.checkpoint.keep=10",
      "--config.checkpoint.async_save=False",
      f"--config.data.sources.ru.path={setup['root'] / 'train.jsonl'}",
      f"--config.evals.heldout.data.sources.ru.path={setup['root'] / 'heldout.jsonl'}",
  ]


def _check(results, code=0):
  for rc, out, err in results:
    assert rc == code, out[-2000:] + err[-4000:]
  return results[0][1]


def _weights(directory):
  ckpt = SafetensorsCheckpoint(str(directory))
  return {name: np.asarray(ckpt.get(name)) for name in ckpt.keys()}


def _losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}


def test_resumed_two_host_run_equals_the_uninterrupted_one(setup, tmp_path):
  work = tmp_path / "run"
  _check(multiprocess_testing.run(_args(setup, work, steps=6, every=3)))
  for host in range(2):  # each host wrote its own iterator state
    assert (work / "checkpoints" / "3" / "data" / f"process_{host}-of-2.json").exists()
  states = [
      (work / "checkpoints" / "3" / "data" / f"process_{h}-of-2.json").read_text() for h in range(2)
  ]
  assert states[0] != states[1]  # they read different shards
  first, first_losses = _weights(work / "hf"), _losses(work)

  # Lose everything after step 3 and run the same command again.
  shutil.rmtree(work / "checkpoints" / "6")
  shutil.rmtree(work / "hf")
  out = _check(multiprocess_testing.run(_args(setup, work, steps=6, every=3)))
  assert "from checkpoint step 3" in out
  again, again_losses = _weights(work / "hf"), _losses(work)
  for step in (4, 5, 6):
    assert again_losses[step] == pytest.approx(first_losses[step], rel=1e-6), step
  for name in first:
    np.testing.assert_allclose(again[name], first[name], rtol=1e-6, atol=1e-7, err_msg=name)


def test_sigterm_on_one_host_stops_both_at_the_same_step(setup, tmp_path):
  work = tmp_path / "run"
  steps = 60
  # A maintenance event on the second host only, delivered right after its step 5.
  # One schedule length for the run and its shorter rerun (train.steps would otherwise set it,
  # and a resume that changes it is refused).
  schedule = "--config.optimizer.total_steps=60"
  procs = multiprocess_testing.start(
      _args(setup, work, steps=steps, every=1000) + [schedule],
      extra_env=[{}, {"LANGSHIFT_FAULT": "term@step=5"}],
  )
  # Both processes exit 75 (EX_TEMPFAIL: rerun to continue) and result.json says preempted.
  out = _check(multiprocess_testing.wait(procs), code=run_result.EXIT_PREEMPTED)
  assert run_result.read_result(str(work))["status"] == "preempted"
  stopped = int(out.split("preempted at step ")[1].split(";")[0])
  assert 5 <= stopped < steps
  saved = sorted(int(p.name) for p in (work / "checkpoints").iterdir() if p.name.isdigit())
  assert saved[-1] == stopped  # the preemption checkpoint (orbax also keeps step 1)
  for host in range(2):
    assert (work / "checkpoints" / str(stopped) / "data" / f"process_{host}-of-2.json").exists()

  out = _check(
      multiprocess_testing.run(_args(setup, work, steps=stopped + 2, every=1000) + [schedule])
  )
  assert f"from checkpoint step {stopped}" in out
  assert max(_losses(work)) == stopped + 2
  assert run_result.read_result(str(work))["status"] == "done"
