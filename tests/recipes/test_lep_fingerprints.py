"""A finished LEP stage is reused only for the config it was run with: its marker records every
value the stage reads, and a rerun with any of them changed is an error naming the key."""

import os
import sys

import pytest

from langshift import config_lib
from langshift.recipes import fingerprints, lep
from langshift.recipes.recipe import run_recipe

sys.path.insert(0, os.path.dirname(__file__))
import test_lep_end_to_end as lep_e2e  # noqa: E402  (tiny models and a Russian corpus)

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, REPO)
from experiments import lep_ru  # noqa: E402


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A finished tiny LEP workdir and the config it was run with."""
  root = tmp_path_factory.mktemp("lep_fingerprints")
  inputs = lep_e2e.write_inputs(root)
  config = lep_ru.get_config("tiny")
  config.lep.update(base=inputs["base"], instruct=inputs["instruct"])
  config.data.sources.ru.path = str(root / "train.jsonl")
  config.evals.heldout.data.sources.ru.path = str(root / "heldout.jsonl")
  config.lock()
  workdir = str(root / "work")
  assert run_recipe(lep.RECIPE, config, workdir, log=lambda _: None)["status"] == "done"
  return config, workdir


def _snapshot(workdir):
  return {
      os.path.join(d, f): os.path.getmtime(os.path.join(d, f))
      for d, _, files in os.walk(workdir)
      for f in files
  }


def test_unchanged_config_skips_every_stage(finished):
  config, workdir = finished
  before = _snapshot(workdir)
  result = run_recipe(lep.RECIPE, config, workdir, log=lambda _: None)
  assert all(s["skipped"] for s in result["stages"].values())
  assert _snapshot(workdir) == before


@pytest.mark.parametrize(
    "key,value,stage",
    [
        ("optimizer.learning_rate", 0.02, "cpt"),
        ("train.seq_len", 64, "cpt"),
        ("data.packing", "greedy", "cpt"),
        ("data.sources.ru.text_field", "body", "tokenizer"),
        # CPT's evaluations are its summary's figures: a read of the training run
        # (langshift/recipes/fingerprints.py, rule 3).
        ("evals.heldout.max_batches", 2, "cpt"),
    ],
)
def test_a_changed_setting_is_an_error_naming_it(finished, key, value, stage):
  config, workdir = finished
  before = _snapshot(workdir)
  old = config_lib.flatten(config)[key]
  changed = config_lib.apply_overrides(config, {key: value})
  with pytest.raises(
      ValueError,
      match=rf"^stage {stage} in .* was run with another config: "
      rf"{key}: {old!r} -> {value!r}; use a new workdir",
  ):
    run_recipe(lep.RECIPE, changed, workdir, log=lambda _: None)
  assert _snapshot(workdir) == before  # nothing overwritten


@pytest.mark.parametrize(
    "key,value",
    [
        ("train.trainable", "all"),
        ("checkpoint.export_dtype", "bfloat16"),
        ("init_from_hf", "/models/x"),
    ],
)
def test_a_setting_that_contradicts_the_recipe_is_refused_up_front(finished, tmp_path, key, value):
  config, _ = finished
  changed = config_lib.apply_overrides(config, {key: value})
  with pytest.raises(ValueError, match=rf"^config\.{key}='{value}' contradicts the LEP recipe"):
    run_recipe(lep.RECIPE, changed, str(tmp_path / "w"), log=lambda _: None)
  assert not (tmp_path / "w").exists()


def test_an_operational_field_keeps_every_finished_stage(finished):
  config, workdir = finished
  before = _snapshot(workdir)
  changed = config_lib.apply_overrides(config, {"lep.evaluate.batch_size": 1})
  result = run_recipe(lep.RECIPE, changed, workdir, log=lambda _: None)
  assert all(s["skipped"] for s in result["stages"].values())
  assert _snapshot(workdir) == before


def test_the_calibration_reads_its_own_run_and_what_it_wires_into_it():
  """`lep.calibration.run` is the calibration's whole training set; the CPT's train, optimizer
  and model sections are not read (the run no longer inherits them)."""
  config = lep_ru.get_config("tiny,calibrate")
  inputs = lep.RECIPE.stage_inputs(config, "calibrate")
  for field in fingerprints.RUN_SECTION_FIELDS:
    assert any(k.startswith(f"lep.calibration.run.{field}") for k in inputs), field
  assert inputs["lep.calibration.run.optimizer.learning_rate"] == 1e-2
  assert inputs["lep.calibration.run.train.epochs"] == 3.0
  assert "seed" in inputs and "lep.calibration.lora.rank" in inputs
  assert "evals.heldout.max_batches" in inputs  # its evaluations are the experiment's
  assert not [k for k in inputs if k.startswith(("train.", "optimizer.", "model."))]
  # CPT reads the main run's training set, its evaluations included.
  cpt = lep.RECIPE.stage_inputs(config, "cpt")
  for key in fingerprints.TRAINING_READS:
    assert any(k == key or k.startswith(key + ".") for k in cpt), key
