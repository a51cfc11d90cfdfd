"""One way for a recipe stage to train: `train_stage(...)`, and one schema for the runs inside a
recipe that are not the experiment's own (`run_config()`).

A recipe has a main training run (InsCP's and native alignment's CPT, LEP's embedding CPT, the
pinch and non-instructional SFTs): it is the experiment's own engine sections (`train`,
`optimizer`, `model`, `checkpoint.export_dtype`, `evals`), with the recipe wiring in only what
its stages made (a starting checkpoint, a tokenizer, the data). Some recipes have secondary runs
(native alignment's worker SFT, LEP's calibration): each is a `run_config()` section of the
recipe, whose `train`, `optimizer`, `model` numerics and `export_dtype` replace the experiment's
wholesale. Of the experiment config a secondary run takes exactly `INHERITED` (how the job runs:
seed, mesh, sharding rules, checkpoint cadence, bad-record policy); every other top-level key
is the engine default unless the stage wires it — no secondary run inherits the main run's data,
evaluations or schedule by accident.

`train.epochs > 0` sets `train.steps` from passes over the run's one chat file (the packed rows
of its rendered conversations, `langshift.data.chat_epochs`), for any run.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from langshift import config_lib
from langshift.recipes.stages import StageInterrupted

# Of the experiment config, what a secondary run keeps (the rest: engine defaults or wired in).
INHERITED = ("seed", "mesh", "logical_rules", "checkpoint", "perf", "data.on_bad_record")
MODEL_NUMERICS = ("dtype", "param_dtype", "scan_layers", "remat_policy", "attention_impl")


def run_config(**overrides) -> ml_collections.ConfigDict:
  """A secondary training run's section: the engine's `train` and `optimizer` schemas (every
  key, engine defaults), the model's numerics and the export dtype. `overrides` are nested dicts
  over those defaults, e.g. `run_config(train=dict(steps=100), optimizer=dict(learning_rate=1e-5))`.
  """
  from langshift.train.config import base_config  # pylint: disable=import-outside-toplevel

  base = base_config()
  run = ml_collections.ConfigDict(
      dict(
          train=base.train.to_dict(),
          optimizer=base.optimizer.to_dict(),
          model={k: base.model[k] for k in MODEL_NUMERICS},
          export_dtype=base.checkpoint.export_dtype,
      )
  )
  for key, value in overrides.items():
    if key not in run:
      raise ValueError(f"run_config: unknown field {key!r}; known fields: {sorted(run)}")
    if isinstance(value, dict):
      _check_keys(value, run[key], f"run_config.{key}")
      run[key].update(value)
    else:
      run[key] = value
  return run


def _check_keys(given, known, where: str) -> None:
  config_lib.check_fields(dict(given), dict(known), where)


def check_run_config(run, where: str) -> None:
  """One-line errors for a secondary run's section, before anything runs."""
  _check_keys(dict(run), run_config(), where)
  for key in ("train", "optimizer", "model"):
    _check_keys(dict(run[key]), run_config()[key], f"{where}.{key}")
  if run.train.epochs < 0:
    raise ValueError(f"{where}.train.epochs={run.train.epochs}; expected >= 0")


def training_config(
    config: ml_collections.ConfigDict,
    *,
    run: ml_collections.ConfigDict | None = None,
    evals: ml_collections.ConfigDict | None = None,
    **wiring: Any,
) -> ml_collections.ConfigDict:
  """The engine config of a recipe's training stage.

  `run=None`: the main run, the experiment config itself less the recipe's section. Otherwise
  the secondary run `run` (a `run_config()`) over the engine defaults plus `INHERITED`, with
  `evals` (default none). `wiring`: top-level engine keys the recipe sets from its own stages
  (`init_from_hf`, `tokenizer`, `data`), replacing the value wholesale.
  """
  from langshift.train.config import base_config  # pylint: disable=import-outside-toplevel

  base = base_config()
  if run is None:
    sub = config.copy_and_resolve_references()
    with sub.unlocked():
      for key in [k for k in sub.keys() if k not in base]:  # the recipe's own section
        del sub[key]
      if evals is not None:
        sub.evals = evals
  else:
    sub = base
    flat = config_lib.flatten(config)
    with sub.unlocked():
      for key in INHERITED:
        if "." in key:
          section, leaf = key.split(".")
          sub[section][leaf] = flat[key]
        else:
          sub[key] = config.copy_and_resolve_references()[key]
      sub.train = ml_collections.ConfigDict(run.train.to_dict())
      sub.optimizer = ml_collections.ConfigDict(run.optimizer.to_dict())
      sub.model.update(run.model.to_dict())
      sub.checkpoint.export_dtype = run.export_dtype
      sub.evals = evals if evals is not None else ml_collections.ConfigDict()
  with sub.unlocked():
    sub.recipe = "cpt"
    sub.stop_after = ""
    sub.checkpoint.export_hf_at_end = True
    for key, value in wiring.items():
      if key not in base:
        raise ValueError(f"training_config: {key!r} is not an engine config key")
      sub[key] = value
  return sub


def epoch_steps(sub: ml_collections.ConfigDict) -> dict[str, int]:
  """With `train.epochs > 0`: sets `train.steps` (and clears `epochs`) from the packed rows of
  the run's one chat source; returns {'epoch_steps', 'epoch_tokens'} ({} otherwise)."""
  epochs = sub.train.epochs
  if not epochs:
    return {}
  # pylint: disable=import-outside-toplevel
  from langshift.data import chat_epochs
  from langshift.data.config import resolve_sources

  sources = resolve_sources(sub.data)
  if len(sources) != 1 or sources[0].template != "chat":
    raise ValueError(
        f"train.epochs={epochs}: epochs are counted over one chat source; this run has "
        f"{[(s.name, s.template) for s in sources]} (set train.steps instead)"
    )
  steps, tokens = chat_epochs.epoch_steps(sub, sources[0].path, epochs)
  with sub.unlocked():
    sub.train.steps, sub.train.epochs = steps, 0.0
  return dict(epoch_steps=steps, epoch_tokens=tokens)


def train_stage(stage: str, config: ml_collections.ConfigDict, out_dir: str) -> dict[str, Any]:
  """Trains the engine config `config` (from `training_config`) in `out_dir` (resuming its
  checkpoint); its summary, or `StageInterrupted` when the run was preempted."""
  # pylint: disable=import-outside-toplevel
  from langshift.recipes.recipe import current_stage
  from langshift.train.trainer import train_and_evaluate

  running = current_stage()
  if running is not None and not running.training:
    raise ValueError(
        f"stage {running.name} trains but does not declare it (Stage(trains=...)): its "
        "fingerprint would miss the training set (langshift/recipes/fingerprints.py)"
    )
  extra = epoch_steps(config)
  summary = {**train_and_evaluate(config, out_dir), **extra}
  if summary.get("stop_reason") == "preempted":
    raise StageInterrupted(stage, summary)
  return summary
