"""`run_experiment(config, workdir)`: the one function `langshift.main` calls.

`config.recipe` picks what runs; every recipe is an importable function of (config, workdir).
"""

from __future__ import annotations

from typing import Any

import ml_collections

RECIPES = ("cpt", "lep")


def run_experiment(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  if config.recipe == "cpt":
    from langshift.train.trainer import train_and_evaluate
    return train_and_evaluate(config, workdir)
  if config.recipe == "lep":
    from langshift.recipes.lep import run_lep
    return run_lep(config, workdir)
  raise ValueError(f"config.recipe={config.recipe!r}; expected one of {RECIPES}")
