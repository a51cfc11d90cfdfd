"""Non-instructional fine-tuning (Xie, Syu & Lee 2024, arXiv:2409.00096): `config.recipe =
"noninstruct"`. The recipe is `recipe.py` (its stages), its section and checks `config.py`, the
document splitting `splitting.py`."""

from langshift.recipes.non_instructional.config import noninstruct_config
from langshift.recipes.non_instructional.recipe import RECIPE

__all__ = ["RECIPE", "noninstruct_config"]
