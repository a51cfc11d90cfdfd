"""The inputs a user must give an experiment (models, corpora, prompt files, server endpoints),
checked together before any stage runs: one line names every missing key, instead of each
recipe's `check_*_config` stopping at the first.

A published setting leaves these empty (paths are the user's; nothing is downloaded), so a run
of it with one path forgotten fails here, with every other forgotten path named too, and before
the workdir is touched.
"""

from __future__ import annotations

from collections.abc import Callable


class MissingInputsError(ValueError):
  """Required inputs are empty; the message names every one of them."""


def _role(role, where: str) -> list[str]:
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


def _inscp(config) -> list[str]:
  i = config.inscp
  missing = [] if i.instruct or i.lep_workdir else ["inscp.instruct"]
  if i.judge.prompts:
    missing += _role(i.judge.role, "inscp.judge.role")
  from langshift.recipes import judged_benchmarks  # pylint: disable=import-outside-toplevel

  return missing + judged_benchmarks.missing_inputs(i, "inscp")


def _lep(config) -> list[str]:
  from langshift.recipes.lep import evaluation  # pylint: disable=import-outside-toplevel

  lep = config.lep
  missing = [f"lep.{k}" for k in ("base", "instruct") if not lep[k]]
  if lep.calibration.enabled and not lep.calibration.prompts:
    missing.append("lep.calibration.prompts")
  if not lep.evaluate.data_dir and evaluation.reads_user_files(lep.evaluate):
    missing.append("lep.evaluate.data_dir")
  return missing


def _native_align(config) -> list[str]:
  na, where = config.native_align, "native_align"
  missing = [] if config.init_from_hf else ["init_from_hf"]
  if not na.upstream_workdir:
    if not na.corpus.path and na.corpus.get("format") != "tfds":
      missing.append(f"{where}.corpus.path")
    if na.rewritten_fraction > 0:
      if not na.worker_init:
        missing.append(f"{where}.worker_init")
      missing += _role(na.expert, f"{where}.expert")
  if na.evaluate.safety_prompts:
    missing += _role(na.evaluate.judge, f"{where}.evaluate.judge")
  return missing


def _noninstruct(config) -> list[str]:
  n, where = config.noninstruct, "noninstruct"
  missing = [] if config.init_from_hf else ["init_from_hf"]
  if not n.corpus.path and n.corpus.get("format") != "tfds":
    missing.append(f"{where}.corpus.path")
  if n.mode == "continuation":
    missing += _role(n.teacher, f"{where}.teacher")
  if n.evaluate.judge_prompts:
    missing += _role(n.evaluate.judge, f"{where}.evaluate.judge")
  from langshift.recipes import judged_benchmarks  # pylint: disable=import-outside-toplevel

  return missing + judged_benchmarks.missing_inputs(n.evaluate, f"{where}.evaluate")


def _pinch(config) -> list[str]:
  p, where = config.pinch, "pinch"
  missing = [] if config.init_from_hf else ["init_from_hf"]
  if not p.parallel_set:
    missing.append(f"{where}.parallel_set")
  if p.evaluate.monolingual_workdir:
    missing += _role(p.evaluate.judge, f"{where}.evaluate.judge")
  return missing


# recipe -> its own required inputs (the engine's data and evaluations are every recipe's).
RECIPES: dict[str, Callable] = {
    "cpt": _cpt,
    "inscp": _inscp,
    "lep": _lep,
    "native_align": _native_align,
    "noninstruct": _noninstruct,
    "pinch": _pinch,
}


def missing_inputs(config) -> list[str]:
  """The config keys of required inputs that are empty, in a stable order."""
  recipe = config.get("recipe", "cpt")
  # A recipe without its config section: its own check says so.
  own = (
      RECIPES[recipe](config) if recipe == "cpt" or (recipe in RECIPES and recipe in config) else []
  )
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
