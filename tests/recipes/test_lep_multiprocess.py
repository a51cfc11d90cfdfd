"""LEP as a multi-host job: two JAX processes (4 simulated CPU devices each, one 8-device mesh,
gloo collectives) run `python -m langshift.main --config=experiments/lep_ru.py:tiny` together.
Host-side stages run once, on process 0, and produce what a single process produces; the
embedding-only CPT runs on both; a failure on process 0 stops process 1 instead of hanging it."""

import filecmp
import json
import os
import shutil
import sys

import multiprocess_testing
import pytest
import test_lep_end_to_end as single

from langshift.recipes.lep import recipe as lep

HOST_STAGES = ("tokenizer", "init", "propagate")


def _run_two_processes(setup, workdir, base=None, timeout=600):
  return multiprocess_testing.run(
      [
          sys.executable,
          "-m",
          "langshift.main",
          "--config=experiments/lep_ru.py:tiny",
          f"--workdir={workdir}",
          f"--config.lep.base={base or setup['base']}",
          f"--config.lep.instruct={setup['instruct']}",
          f"--config.data.sources.ru.path={setup['root'] / 'train.jsonl'}",
          f"--config.evals.heldout.data.sources.ru.path={setup['root'] / 'heldout.jsonl'}",
      ],
      timeout=timeout,
  )


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  return single.write_inputs(tmp_path_factory.mktemp("lep_multiprocess"))


def test_two_process_lep_runs_host_stages_once_on_process_zero(setup, tmp_path):
  work = tmp_path / "lep"
  (rc0, out0, err0), (rc1, out1, err1) = _run_two_processes(setup, work)
  assert rc0 == 0 and rc1 == 0, out0[-2000:] + err0[-3000:] + err1[-3000:]
  for stage in HOST_STAGES + ("cpt",):
    assert out0.count(f"langshift: stage {stage} -> ") == 1, out0
    assert "langshift: stage" not in out1
  assert "mesh {'data': 1, 'fsdp': 8, 'tensor': 1}" in out0  # one mesh over both processes
  with open(work / "stages" / "cpt.json") as f:
    assert json.load(f)["summary"]["step"] == 4

  # Process 0's host stages made exactly what a single process makes from the same inputs.
  config = single_process_config(setup)
  paths = lep.RECIPE.paths(str(tmp_path / "single"))
  lep.build_target_tokenizer(config, paths["tokenizer"])
  assert filecmp.cmp(
      work / "tokenizer_new" / "tokenizer.json",
      os.path.join(paths["tokenizer"], "tokenizer.json"),
      shallow=False,
  )
  lep.initialise_base(setup["base"], paths["tokenizer"], paths["init"], method="mean", seed=0)
  assert filecmp.cmp(
      work / "base_init" / "model.safetensors",
      os.path.join(paths["init"], "model.safetensors"),
      shallow=False,
  )
  # ... and propagated from the donor that the two-process CPT trained.
  shutil.copytree(work / "cpt" / "hf", os.path.join(paths["cpt"], "hf"))
  lep.propagate_into_instruct(setup["base"], setup["instruct"], paths, method="conversion")
  for name in ("model.safetensors", "config.json", "tokenizer.json"):
    assert filecmp.cmp(
        work / "lep_instruct" / name, os.path.join(paths["propagate"], name), shallow=False
    ), name


def test_failure_on_process_zero_stops_the_other_process(setup, tmp_path):
  broken = tmp_path / "base_without_weights"
  shutil.copytree(setup["base"], broken)
  for name in os.listdir(broken):
    if name.endswith(".safetensors"):
      os.remove(broken / name)
  (rc0, _, err0), (rc1, _, err1) = _run_two_processes(
      setup, tmp_path / "lep", base=broken, timeout=300
  )
  assert rc0 != 0 and rc1 != 0
  assert "base_without_weights" in err0
  assert "stage init failed on process 0" in err1
  assert os.path.exists(tmp_path / "lep" / "stages" / "init.failed")


def single_process_config(setup):
  sys.path.insert(0, single.REPO)
  from experiments import lep_ru

  config = lep_ru.get_config("tiny")
  config.lep.update(base=setup["base"], instruct=setup["instruct"])
  config.data.sources.ru.path = str(setup["root"] / "train.jsonl")
  return config
