"""`run_experiment(config, workdir)`: the one function `langshift.main` calls.

`config.recipe` picks what runs; every recipe is an importable function of (config, workdir),
imported only when chosen (the engine and the recipes pull in JAX and model code).
"""

from __future__ import annotations

import importlib
from typing import Any

import ml_collections

from langshift.recipes import required_inputs

# recipe name -> "module:function"
RECIPES = {
    "cpt": "langshift.train.trainer:train_and_evaluate",
    "lep": "langshift.recipes.lep:run_lep",
    "inscp": "langshift.recipes.inscp:run_inscp",
    "native_align": "langshift.recipes.native_alignment:run_native_alignment",
    "noninstruct": "langshift.recipes.non_instructional:run_non_instructional",
    "pinch": "langshift.recipes.pinch:run_pinch",
}


def run_experiment(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """The recipe's result: {'status': 'done' | 'preempted' | 'stopped', 'stages', 'export'}
  ('stopped': `config.stop_after` was reached; 'stopped_after' names the stage)."""
  if config.recipe not in RECIPES:
    raise ValueError(f"config.recipe={config.recipe!r}; expected one of {tuple(RECIPES)}")
  module_name, function = RECIPES[config.recipe].split(":")
  module = importlib.import_module(module_name)
  if config.get("stop_after", "") and not hasattr(module, "STAGE_DIRS"):
    raise ValueError(
        f"config.stop_after={config.stop_after!r}; expected empty: recipe {config.recipe!r} has "
        "no stages"
    )
  # Every missing model, corpus, prompt file and endpoint on one line, before anything runs.
  required_inputs.check_required_inputs(config)
  return getattr(module, function)(config, workdir)
