"""Stage fingerprints come from declared reads, by one set of rules
(langshift/recipes/fingerprints.py), checked on every recipe's published setting: every training
stage reads the whole training set; changing an operational field (an endpoint, a timeout, a
batch size of a server role) keeps a finished stage finished; changing anything a stage reads is
a change the marker names."""

import glob
import importlib
import importlib.util
import os

import pytest

from langshift import config_lib
from langshift.recipes import fingerprints, stages
from langshift.recipes.run import RECIPES

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _experiments():
  out = []
  for path in sorted(glob.glob(os.path.join(REPO, "experiments", "*.py"))):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    for name in config.data.sources.keys():  # the published setting leaves its corpora to the user
      config.data.sources[name].path = config.data.sources[name].path or f"/data/{name}.jsonl"
    if config.recipe in RECIPES:
      recipe = getattr(importlib.import_module(RECIPES[config.recipe]), "RECIPE", None)
      if recipe is not None:
        out.append(pytest.param(recipe, config, id=os.path.basename(path)[:-3]))
  return out


EXPERIMENTS = _experiments()


def _changed(value):
  """Another value of the same kind."""
  if isinstance(value, bool):
    return not value
  if isinstance(value, (int, float)):
    return value + 1
  if isinstance(value, str):
    return value + "x"
  if value is None:
    return 1
  if isinstance(value, (list, tuple)):
    return [*value, value[0] if value else "x"]
  raise TypeError(value)


def _with(config, key, value):
  config = config.copy_and_resolve_references()
  with config.ignore_type(), config.unlocked():
    node = config
    *path, leaf = key.split(".")
    for part in path:
      node = node[part]
    node[leaf] = tuple(value) if isinstance(value, list) else value
  return config


def _training_fields(stage):
  """The training set as keys of this stage's config (rule 1 of fingerprints.py)."""
  if stage.trains == "":
    return fingerprints.TRAINING_READS
  return ("seed", *(f"{stage.trains}.{f}" for f in fingerprints.RUN_SECTION_FIELDS))


@pytest.mark.parametrize("recipe, config", EXPERIMENTS)
def test_every_training_stage_reads_the_whole_training_set(recipe, config):
  training = [s for s in recipe.stages if s.training]
  assert training, f"{recipe.name} has no training stage"
  for stage in training:
    inputs = recipe.stage_inputs(config, stage.name)
    flat = config_lib.flatten(config)
    for field in _training_fields(stage):
      # An empty section (no evaluations) reads as the key itself, so adding one is a change.
      under = [k for k in flat if k == field or k.startswith(field + ".")] or [field]
      assert any(k in inputs for k in under), f"{recipe.name}.{stage.name} does not read {field}"
    # A value of the main run's own training set changes the fingerprint, named in the error.
    key = "optimizer.learning_rate" if stage.trains == "" else f"{stage.trains}.train.steps"
    after = recipe.stage_inputs(_with(config, key, _changed(flat[key])), stage.name)
    assert key in stages.describe_changes(inputs, after)


@pytest.mark.parametrize("recipe, config", EXPERIMENTS)
def test_operational_fields_never_invalidate_a_finished_stage(recipe, config):
  flat = config_lib.flatten(config)
  operational = [k for k in flat if fingerprints.is_operational(k)]
  assert operational
  checked = 0
  for stage in recipe.stages:
    before = recipe.stage_inputs(config, stage.name)
    read = set(fingerprints.stage_inputs(config, stage.reads, stage.trains))
    for key in operational:
      prefix_read = any(
          key == r or key.startswith(r + ".")
          for r in (*stage.reads, *fingerprints.training_reads(stage.trains))
      )
      if not prefix_read:
        continue
      assert key not in read
      changed = _with(config, key, _changed(flat[key]))
      assert recipe.stage_inputs(changed, stage.name) == before, (stage.name, key)
      checked += 1
  assert checked, f"{recipe.name}: no operational field under any stage's reads"


@pytest.mark.parametrize("recipe, config", EXPERIMENTS)
def test_changing_any_read_is_a_change_the_marker_names(recipe, config):
  flat = config_lib.flatten(config)
  for stage in recipe.stages:
    before = recipe.stage_inputs(config, stage.name)
    for key in sorted(k for k in before if k in flat)[:40]:
      try:
        changed = _with(config, key, _changed(flat[key]))
        after = recipe.stage_inputs(changed, stage.name)
      except (TypeError, KeyError, AttributeError, ValueError):
        continue  # a value this test cannot vary freely (a choice among names, a structure)
      assert key in stages.describe_changes(before, after, most=100), (stage.name, key)
