"""A finished LEP stage is reused only for the config it was run with: its marker records every
value the stage reads, and a rerun with any of them changed is an error naming the key."""

import os
import sys

import pytest

from langshift import config_lib
from langshift.recipes import lep

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
  assert lep.run_lep(config, workdir, log=lambda _: None)["status"] == "done"
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
  result = lep.run_lep(config, workdir, log=lambda _: None)
  assert all(s["skipped"] for s in result["stages"].values())
  assert _snapshot(workdir) == before


@pytest.mark.parametrize(
    "key,value,stage",
    [
        ("optimizer.learning_rate", 0.02, "cpt"),
        ("train.seq_len", 64, "cpt"),
        ("data.packing", "greedy", "cpt"),
        ("data.sources.ru.text_field", "body", "tokenizer"),
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
    lep.run_lep(changed, workdir, log=lambda _: None)
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
    lep.run_lep(changed, str(tmp_path / "w"), log=lambda _: None)
  assert not (tmp_path / "w").exists()
