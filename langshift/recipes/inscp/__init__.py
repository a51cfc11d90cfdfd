"""InsCP, instruction continual pre-training (Chen & Lee 2024, arXiv:2405.20175):
`config.recipe = "inscp"`. The recipe is `recipe.py` (its stages), its section and checks
`config.py`, its TMMLU+ evaluation `tmmluplus.py`."""

from langshift.recipes.inscp.config import inscp_config
from langshift.recipes.inscp.recipe import RECIPE

__all__ = ["RECIPE", "inscp_config"]
