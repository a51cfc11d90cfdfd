"""`run_experiment(config, workdir)`: the one function `langshift.main` calls.

`config.recipe` picks what runs: "cpt" is the training engine on the config itself; every other
name is a recipe package whose `RECIPE` is its declaration (`langshift/recipes/recipe.py`), run
by the one recipe runner. A recipe is imported only when chosen (it pulls in JAX and model code).
"""

from __future__ import annotations

import importlib
from typing import Any

import ml_collections

from langshift.recipes import required_inputs

ENGINE = "cpt"
# recipe name -> its package (holding RECIPE)
RECIPES = {
    "lep": "langshift.recipes.lep",
    "inscp": "langshift.recipes.inscp",
    "native_align": "langshift.recipes.native_alignment",
    "noninstruct": "langshift.recipes.non_instructional",
    "pinch": "langshift.recipes.pinch",
}


def recipe_declaration(name: str):
  """The `Recipe` that `config.recipe=name` runs."""
  if name not in RECIPES:
    raise ValueError(f"config.recipe={name!r}; expected one of {(ENGINE, *RECIPES)}")
  return importlib.import_module(RECIPES[name]).RECIPE


def run_experiment(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """The run's result: {'status': 'done' | 'preempted' | 'stopped', 'stages', 'export'}
  ('stopped': `config.stop_after` was reached; 'stopped_after' names the stage)."""
  if config.recipe == ENGINE:
    if config.get("stop_after", ""):
      raise ValueError(
          f"config.stop_after={config.stop_after!r}; expected empty: recipe 'cpt' has no stages"
      )
    from langshift.train.trainer import train_and_evaluate  # pylint: disable=import-outside-toplevel

    required_inputs.check_required_inputs(config)
    return train_and_evaluate(config, workdir)
  recipe = recipe_declaration(config.recipe)
  # Every missing model, corpus, prompt file and endpoint on one line, before anything runs.
  required_inputs.check_required_inputs(config)
  from langshift.recipes.recipe import run_recipe  # pylint: disable=import-outside-toplevel

  return run_recipe(recipe, config, workdir)
