"""Every experiment file: its default and every variant load, lock, and take every sweep() entry;
every config names a recipe that exists."""

import glob
import importlib.util
import os

import pytest

from langshift import config_lib
from langshift.recipes.run import RECIPES

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FILES = sorted(glob.glob(os.path.join(REPO, "experiments", "*.py")))


def _load(path):
  spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _variants(module):
  return config_lib.all_args(**getattr(module, "ARGS", {}))


@pytest.mark.parametrize("path", FILES, ids=os.path.basename)
def test_every_variant_loads_and_takes_every_sweep_entry(path):
  module = _load(path)
  assert hasattr(module, "ARGS"), "experiment files declare their arguments in ARGS"
  for arg in _variants(module):
    config = module.get_config(arg or None)
    config.lock()  # as --config does: an entry that adds a key fails below
    assert config.recipe in ("cpt", *RECIPES), (arg, config.recipe)
    for overrides in getattr(module, "sweep", lambda: [])():
      swept = config_lib.apply_overrides(config, overrides)
      for key, value in overrides.items():
        assert config_lib.flatten(swept)[key] == config_lib.flatten({key: value})[key]


def test_a_bad_variant_is_an_error_naming_it():
  module = _load(os.path.join(REPO, "experiments", "lep_ru.py"))
  with pytest.raises(ValueError, match="config argument 'sise' is unknown"):
    module.get_config("sise=tiny")


@pytest.mark.parametrize(
    "name, arg, template",
    [
        ("pinch", None, "llama3"),
        ("pinch", "model=mistral", "mistral"),
        ("noninstruct", None, "mistral"),
        ("native_align_ar", None, "llama3"),
    ],
)
def test_published_base_students_name_their_chat_template(name, arg, template):
  # Their students are base checkpoints with no chat template: the run's template is the
  # config's, and the SFT data, the exports and the before/after answers all use it.
  config = _load(os.path.join(REPO, "experiments", f"{name}.py")).get_config(arg)
  assert config.data.chat_template == template


@pytest.mark.parametrize("path", FILES, ids=os.path.basename)
def test_published_settings_name_the_slice_they_are_sized_for(path):
  # `python -m langshift.aot` compiles for config.mesh.target when given no --target, and the
  # figures in docs/benchmarks.md are for that slice; CPU- and tiny-sized variants name none.
  from langshift.aot import targets  # pylint: disable=import-outside-toplevel

  module = _load(path)
  for arg in _variants(module):
    config = module.get_config(arg or None)
    cpu_sized = "size=cpu" in arg or "size=tiny" in arg or "model=smollm2" in arg
    if os.path.basename(path) == "demo.py" or cpu_sized:
      assert config.mesh.target == "", arg
    else:
      assert targets.get_target(config.mesh.target).name == config.mesh.target, arg
  if os.path.basename(path) == "native_align_ar.py":
    assert module.get_config("slice=v5e-64").mesh.target == "v5e-64"
