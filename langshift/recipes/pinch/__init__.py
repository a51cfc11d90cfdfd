"""A pinch of multilinguality (Shaham et al. 2024, arXiv:2401.01854): `config.recipe = "pinch"`.
The recipe is `recipe.py` (its stages), its section and checks `config.py`, the fixed-budget
mixtures `mixture.py`, the IF score `evaluation.py`, a finished sweep's tables and plots
`report.py`."""

from langshift.recipes.pinch.config import pinch_config
from langshift.recipes.pinch.recipe import RECIPE

__all__ = ["RECIPE", "pinch_config"]
