"""The inputs a user must give an experiment (models, corpora, prompt files, server endpoints),
checked together before any stage runs: one line names every missing key, instead of each
recipe's checks stopping at the first. Each recipe declares its own (`Recipe.required_inputs`, in
its package's `config.py`); the engine's data sources and evaluations are every recipe's.

A published setting leaves these empty (paths are the user's; nothing is downloaded), so a run
of it with one path forgotten fails here, with every other forgotten path named too, and before
the workdir is touched.
"""

from __future__ import annotations


class MissingInputsError(ValueError):
  """Required inputs are empty; the message names every one of them."""


def role_inputs(role, where: str) -> list[str]:
  """A server role needs its endpoint, a local one its checkpoint."""
  if role.backend == "openai":
    return [] if role.base_url else [f"{where}.base_url"]
  if role.backend == "local":
    return [] if role.hf_dir else [f"{where}.hf_dir"]
  return []  # an unknown backend: the recipe's own check names it


def _engine_data(config, *, eval_prompts: bool = True) -> list[str]:
  """Every engine data source, every evaluation's data source and prompt file."""
  missing = []
  for name, src in config.data.sources.items():
    if src.get("format") != "tfds" and not src.path:
      missing.append(f"data.sources.{name}.path")
  for name, ev in config.get("evals", {}).items():
    for source, src in ev.get("data", {}).get("sources", {}).items():
      if src.get("format") != "tfds" and not src.path:
        missing.append(f"evals.{name}.data.sources.{source}.path")
    if eval_prompts and "prompts" in ev and not ev.prompts:
      missing.append(f"evals.{name}.prompts")
  return missing


def _cpt(config) -> list[str]:
  return [] if config.init_from_hf or config.get("tokenizer") else ["init_from_hf"]


def missing_inputs(config) -> list[str]:
  """The config keys of required inputs that are empty, in a stable order."""
  from langshift.recipes.run import ENGINE, RECIPES, recipe_declaration  # pylint: disable=import-outside-toplevel

  recipe = config.get("recipe", ENGINE)
  own = []
  if recipe == ENGINE:
    own = _cpt(config)
  elif recipe in RECIPES:
    declaration = recipe_declaration(recipe)
    # A recipe without its config section: its own check says so.
    if declaration.section in config:
      own = declaration.required_inputs(config)
  # A pinch's response evaluation reads the prompts its mixture stage writes (`prompts` empty).
  return own + _engine_data(config, eval_prompts=recipe != "pinch")


def check_required_inputs(config) -> None:
  """Raises MissingInputsError naming every missing required input, on one line."""
  missing = missing_inputs(config)
  if missing:
    raise MissingInputsError(
        f"missing required inputs: {', '.join('config.' + k for k in missing)} (give each with "
        "--config.<key>=...; nothing ran)"
    )
