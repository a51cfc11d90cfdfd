"""Native alignment (Liang et al. 2024, arXiv:2412.03253): `config.recipe = "native_align"`.

The recipe is `recipe.py` (its stages), its section and checks `config.py`; the expert's and the
worker's prompts `polishing_policy.py`, the filter of their rewrites `rewrite_filter.py`; the
evaluate stage `evaluation.py` with the Arabic benchmarks (`arabic_benchmarks.py`) and the
BeaverTails safety judge (`beavertails.py`, `safety_judge.py`)."""

from langshift.recipes.native_alignment.config import native_align_config
from langshift.recipes.native_alignment.recipe import RECIPE

__all__ = ["RECIPE", "native_align_config"]
