"""A recipe is a declaration: its config section, its checks and its ordered stages.

    RECIPE = Recipe(
        name="noninstruct", title="non-instructional fine-tuning", section="noninstruct",
        section_config=noninstruct_config, check=check_config,
        required_settings={"checkpoint.export_hf_at_end": True},
        stages=(
            Stage("split", "split", split_corpus, reads=("noninstruct.corpus", ...)),
            Stage("sft", "sft", fine_tune, trains=""),
            ...
        ),
        export=lambda ctx: os.path.join(ctx.paths["sft"], "hf"), export_name="student",
    )

`run_recipe(RECIPE, config, workdir)` is the one runner: it checks the section (present, no
unknown field), the engine settings the recipe needs and the recipe's own checks — all before
any stage runs — then runs each stage that applies under the config (`Stage.when`) through a
`StageRunner` (markers, fingerprints from the declared reads, `stop_after`, the workdir lock),
logs one line per stage, and returns the result: status done, stopped (`config.stop_after`) or
preempted (a training stage's `StageInterrupted`), the stage summaries and the export.

Two ways to reuse finished stages of another folder: `Recipe.upstream` names a workdir whose
finished `Stage.upstream` stages are read instead of run (native alignment's sweep over the mix
rewrites the corpus once); `Recipe.shared_dir` names a folder where the `Stage.shareable` stages
run for every workdir with their inputs (LEP's propagation cells train CPT once).
"""

from __future__ import annotations

import contextvars
import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections

from langshift import config_lib
from langshift.recipes import fingerprints
from langshift.recipes import stages as stages_lib
from langshift.recipes.stages import StageInterrupted, StageRunner, StoppedAfter

# The stage whose body is running (None outside a recipe): `training.train_stage` checks that a
# stage which trains declares it, so that its fingerprint holds the training set.
_CURRENT_STAGE: contextvars.ContextVar = contextvars.ContextVar("langshift_stage", default=None)


def current_stage() -> Stage | None:
  return _CURRENT_STAGE.get()


@dataclasses.dataclass
class StageContext:
  """What a stage body sees: the config, each stage's folder (`paths[name]`; an upstream or
  shared stage's folder is the one it finished in), the summaries of the stages run so far."""

  config: ml_collections.ConfigDict
  workdir: str
  paths: dict[str, str]
  stages: dict[str, dict[str, Any]]
  log: Callable[[str], None]
  recipe_section: str = ""

  @property
  def section(self) -> ml_collections.ConfigDict:
    """The recipe's own config section (`config.<Recipe.section>`)."""
    return self.config[self.recipe_section]


@dataclasses.dataclass(frozen=True)
class Stage:
  """One resumable stage: `body(ctx)` writes into `ctx.paths[name]` (folder `dir` of the
  workdir) and returns its summary.

  reads:      config keys (dotted, or prefixes) its output depends on: its fingerprint, less the
              operational fields (`fingerprints.py`).
  inputs:     further fingerprinted values computed from the config (an upstream export's
              fingerprint, per-source fields).
  trains:     None for a stage that does not train; "" for the recipe's main training run (it
              then reads `fingerprints.TRAINING_READS`); "<section>" for a secondary run whose
              `training.run_config()` is that config section (it reads seed and the section).
              A training stage runs on every process and resumes its checkpoint.
  when:       whether the stage runs under this config (default: always); `skip_note` is
              logged when it does not.
  resumable:  keep what a killed attempt left (a generation or scoring job resumes its shards).
  collective: every process runs the body (it joins collectives); otherwise process 0 does.
  upstream, shareable: see `Recipe.upstream` and `Recipe.shared_dir`.
  """

  name: str
  dir: str
  body: Callable[[StageContext], dict[str, Any]]
  reads: tuple[str, ...] = ()
  inputs: Callable[[ml_collections.ConfigDict], dict[str, Any]] | None = None
  trains: str | None = None
  when: Callable[[ml_collections.ConfigDict], bool] | None = None
  skip_note: str = ""
  resumable: bool = False
  collective: bool = False
  upstream: bool = False
  shareable: bool = False

  @property
  def training(self) -> bool:
    return self.trains is not None

  def applies(self, config) -> bool:
    return self.when is None or bool(self.when(config))


@dataclasses.dataclass(frozen=True)
class Recipe:
  """A recipe's declaration (see the module docstring)."""

  name: str  # config.recipe
  title: str  # in log lines: "LEP done; ..."
  section: str  # its config section, e.g. "lep"
  section_config: Callable[[], ml_collections.ConfigDict]
  stages: tuple[Stage, ...]
  check: Callable[[ml_collections.ConfigDict], None]
  export: Callable[[StageContext], str]  # the path of what the recipe hands on
  export_name: str = "model"  # in the final log line: "...; <export_name>: <path>"
  # Engine settings the recipe needs and the experiment file must state (checked, not
  # overridden): dotted key -> value.
  required_settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  # The inputs a user must give (models, corpora, prompt files, endpoints) that the config leaves
  # empty, as config keys: named together on one line before anything runs
  # (`langshift/recipes/required_inputs.py`).
  required_inputs: Callable[[ml_collections.ConfigDict], list[str]] = lambda config: []
  upstream: Callable[[ml_collections.ConfigDict], str] | None = None
  shared_dir: Callable[[ml_collections.ConfigDict, str], str] | None = None

  @property
  def stage_names(self) -> tuple[str, ...]:
    return tuple(s.name for s in self.stages)

  def stage(self, name: str) -> Stage:
    for s in self.stages:
      if s.name == name:
        return s
    raise KeyError(f"recipe {self.name!r} has no stage {name!r}; stages: {self.stage_names}")

  def stage_inputs(self, config, name: str) -> dict[str, Any]:
    """Every value stage `name` reads: its fingerprint in the stage marker."""
    stage = self.stage(name)
    values = fingerprints.stage_inputs(config, stage.reads, stage.trains)
    if stage.inputs is not None:
      values.update(stage.inputs(config))
    return values

  def paths(self, workdir: str, config=None) -> dict[str, str]:
    """Each stage's folder: in `workdir`, or in the upstream workdir / shared folder the config
    names for the stages that can come from there."""
    upstream = self.upstream(config) if config is not None and self.upstream else ""
    shared = self.shared_dir(config, workdir) if config is not None and self.shared_dir else ""
    out = {}
    for s in self.stages:
      root = workdir
      if upstream and s.upstream:
        root = upstream
      elif shared and s.shareable:
        root = shared
      out[s.name] = os.path.join(root, s.dir)
    return out

  def check_config(self, config) -> None:
    """Every one-line error of the section, the required engine settings and the recipe's own
    checks, before any stage runs."""
    if self.section not in config:
      module = self.section_config.__module__
      raise ValueError(
          f"config.recipe={self.name!r} needs a config.{self.section} section: "
          f"config.{self.section} = {module}.{self.section_config.__name__}()"
      )
    config_lib.check_fields(
        dict(config[self.section]), self.section_config(), f"config.{self.section}"
    )
    flat = config_lib.flatten(config)
    for key, required in self.required_settings.items():
      if flat[key] != required:
        raise ValueError(
            f"config.{key}={flat[key]!r} contradicts the {self.title} recipe, which needs "
            f"{required!r} (its required_settings)"
        )
    self.check(config)


def run_recipe(
    recipe: Recipe,
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
  """Runs (or continues) every stage of `recipe`; returns {'status': 'done' | 'stopped' |
  'preempted', 'stages': {name: summary}, 'export', and 'stopped_after' when stopped}."""
  recipe.check_config(config)
  stop_after = config.get("stop_after", "")
  if stop_after and stop_after not in recipe.stage_names:
    raise ValueError(f"config.stop_after={stop_after!r}; expected one of {recipe.stage_names}")
  runner = StageRunner(workdir, log=log, stop_after=stop_after, order=recipe.stage_names)
  upstream_dir = recipe.upstream(config) if recipe.upstream else ""
  upstream = StageRunner(upstream_dir, log=log) if upstream_dir else None
  shared_dir = recipe.shared_dir(config, workdir) if recipe.shared_dir else ""
  shared = StageRunner(shared_dir, log=log) if shared_dir else None
  ctx = StageContext(
      config=config,
      workdir=workdir,
      paths=recipe.paths(workdir, config),
      stages={},
      log=runner.log,
      recipe_section=recipe.section,
  )
  noted: set[str] = set()  # stages skipped for one reason share one log line
  try:
    for stage in recipe.stages:
      if not stage.applies(config):
        skipped = [s.name for s in recipe.stages if s.skip_note == stage.skip_note]
        if stage.skip_note and stage.skip_note not in noted:
          noted.add(stage.skip_note)
          runner.log(f"langshift: {stage.skip_note}: skipping {', '.join(skipped)}")
        continue
      summary = _run_stage(recipe, stage, ctx, runner, upstream, shared)
      ctx.stages[stage.name] = summary
      runner.log(f"langshift: stage {stage.name}: {stages_lib.format_counts(summary)}")
  except StageInterrupted as e:
    ctx.stages[e.stage] = e.summary
    runner.log(
        f"langshift: {recipe.title} stopped during stage {e.stage}; rerun the same command to "
        "continue"
    )
    return {"status": "preempted", "stages": ctx.stages, "export": None}
  except StoppedAfter as e:
    return {"status": "stopped", "stopped_after": e.stage, "stages": e.stages, "export": None}
  export = recipe.export(ctx)
  runner.log(f"langshift: {recipe.title} done; {recipe.export_name}: {export}")
  return {"status": "done", "stages": ctx.stages, "export": export}


def _run_stage(recipe, stage, ctx, runner, upstream, shared) -> dict[str, Any]:
  inputs = recipe.stage_inputs(ctx.config, stage.name)
  name, output = stage.name, ctx.paths[stage.name]
  keep = stage.resumable or stage.training
  collective = stage.collective or stage.training

  def body():
    token = _CURRENT_STAGE.set(stage)
    try:
      return stage.body(ctx)
    finally:
      _CURRENT_STAGE.reset(token)

  if upstream is not None and stage.upstream:
    return runner.reached(name, upstream.recorded(name, inputs))
  if shared is not None and stage.shareable:
    shared_dir = shared.workdir

    def in_shared_dir():
      summary = shared.run(
          name, output, body, inputs=inputs, clear_partial=not keep, collective=collective
      )
      if summary.get("skipped"):
        runner.log(f"langshift: stage {name}: reused from {shared_dir}")
      return {**summary, "shared_dir": shared_dir}

    # Every process enters: the shared folder's runner decides who runs the body; the partial
    # output lives in the shared folder, so this workdir's runner never clears it.
    return runner.run(
        name, output, in_shared_dir, inputs=inputs, clear_partial=False, collective=True
    )
  return runner.run(
      name, output, body, inputs=inputs, clear_partial=not keep, collective=collective
  )
