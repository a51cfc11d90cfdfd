"""Learned embedding propagation (Tikhomirov & Chernyshev 2024, arXiv:2412.21140):
`config.recipe = "lep"`. The recipe is `recipe.py` (its stages), its section and checks
`config.py`, the calibration `calibration.py`, the evaluate stage `evaluation.py`, and what the
stages read from model and tokenizer files `inputs.py`."""

from langshift.recipes.lep.config import lep_config
from langshift.recipes.lep.recipe import RECIPE

__all__ = ["RECIPE", "lep_config"]
