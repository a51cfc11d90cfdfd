"""LEP's evaluate stage: the final chat model (lep_instruct/, or calibrated/hf) on a benchmark
suite, zero-shot through its chat template.

Tikhomirov & Chernyshev 2024 (arXiv:2412.21140) report Darumeru for every tokenizer x
propagation cell (Sec. 3, Tables 2-4): base models 5-shot, instruct models zero-shot. The recipe
evaluates the instruct side, so the published setting is the `darumeru` suite on the user's local
copies of its task files (`langshift/evaluation/darumeru.py`), zero-shot; CPU and tiny runs use
the offline `handbook_mini` suite. The scores land in the stage summary (`eval/<task>/<metric>`,
`eval/micro_avg`), which `langshift.sweep_results` puts in the sweep table as
`evaluate:eval/...` columns.

A suite with Darumeru's tasks is also scored as the paper reports it
(`langshift/evaluation/darumeru_published.py`): PARus runs in both orders of its alternatives
(`with_swapped_parus`), each task gets its own metric and the paper's averages are added
(`darumeru/<task>/score`, `darumeru/<group>`, `darumeru/micro_avg`, `darumeru/tasks`).
"""

from __future__ import annotations

import fnmatch
import json
import os
from typing import Any

import ml_collections

from langshift import config_lib
from langshift.recipes import roles


def evaluate_config() -> ml_collections.ConfigDict:
  """`config.lep.evaluate`: suite "" skips the stage."""
  return ml_collections.ConfigDict(
      dict(
          suite="handbook_mini",  # a built-in suite name or a suite JSON path; "": no evaluation
          data_dir="",  # folder of the suite's task files, for suites that read the user's files
          tasks="",  # comma-separated name patterns of the tasks to run; "": all
          max_examples=0,  # per task (0: every example)
          num_fewshot=0,  # the paper's protocol for instruct models: zero-shot
          chat=True,  # through the chat template (the instruct protocol)
          batch_size=8,
          dtype="float32",  # compute dtype of the evaluated model
      )
  )


# What the stage reads (`Stage.reads`, recipe.py); what is evaluated follows from the calibration
# switch (lep_instruct/ or calibrated/hf).
READS = ("lep.evaluate", "lep.calibration.enabled", "seed")


def check_evaluate_config(config) -> None:
  """One-line errors before any stage runs: an unknown suite, missing task files, no match."""
  ev, where = config.lep.evaluate, "config.lep.evaluate"
  config_lib.check_fields(dict(ev), evaluate_config(), where)
  if not ev.suite:
    return
  if ev.num_fewshot < 0 or ev.max_examples < 0 or ev.batch_size < 1:
    raise ValueError(
        f"{where}: num_fewshot={ev.num_fewshot}, max_examples={ev.max_examples} must be >= 0 "
        f"and batch_size={ev.batch_size} >= 1"
    )
  suite = load(ev)
  for task in suite.tasks:
    for file in (task.path, task.fewshot_path):
      if file and not os.path.exists(file):
        raise FileNotFoundError(f"{where}.suite={ev.suite!r}: task {task.name}: no file {file}")


def reads_user_files(ev) -> bool:
  """Whether the suite of `config.lep.evaluate` reads task files the user supplies (Darumeru)."""
  if not ev.suite:
    return False
  # pylint: disable=import-outside-toplevel
  from langshift.evaluation.tasks import resolve_suite_path

  try:
    with open(resolve_suite_path(ev.suite), encoding="utf-8") as f:
      return bool(json.load(f).get("requires_data_dir"))
  except (FileNotFoundError, ValueError):
    return False  # an unknown suite: check_evaluate_config names it


def load(ev):
  """The suite of `config.lep.evaluate`, narrowed to its `tasks` patterns."""
  # pylint: disable=import-outside-toplevel
  import dataclasses

  from langshift.evaluation.tasks import load_suite, resolve_suite_path

  where = "config.lep.evaluate"
  try:
    path = resolve_suite_path(ev.suite)
  except FileNotFoundError as e:
    raise FileNotFoundError(f"{where}.suite={ev.suite!r}: {e}") from e
  overrides = {"max_examples": ev.max_examples} if ev.max_examples else {}
  try:
    suite = load_suite(path, data_dir=ev.data_dir or None, **overrides)
  except ValueError as e:
    hint = "" if ev.data_dir else f"; give {where}.data_dir, or {where}.suite='' for none"
    raise ValueError(f"{where}.suite={ev.suite!r}: {e}{hint}") from e
  if ev.tasks:
    patterns = [t.strip() for t in ev.tasks.split(",") if t.strip()]
    chosen = tuple(t for t in suite.tasks if any(fnmatch.fnmatchcase(t.name, p) for p in patterns))
    if not chosen:
      raise ValueError(
          f"{where}.tasks={ev.tasks!r} matches no task of {ev.suite!r} "
          f"({[t.name for t in suite.tasks]})"
      )
    suite = dataclasses.replace(suite, tasks=chosen)
  return suite


def evaluate(config, model_dir: str, out_dir: str) -> dict[str, Any]:
  """Stage: the suite on `model_dir`; returns (and writes to out_dir/metrics.json) its scores."""
  # pylint: disable=import-outside-toplevel
  from langshift.evaluation import darumeru_published
  from langshift.evaluation.harness import run_eval_suite

  ev = config.lep.evaluate
  suite = load(ev)
  published = any(t.name in darumeru_published.TASKS for t in suite.tasks)
  if published:
    suite = darumeru_published.with_swapped_parus(suite, out_dir)
  model = roles.make_generator(
      roles.role_config(
          backend="local", hf_dir=model_dir, dtype=ev.dtype, batch_size=ev.batch_size
      ),
      rules=config.logical_rules,
      num_devices=config.mesh.num_devices,
  )
  samples: list = []
  metrics = run_eval_suite(
      suite,
      config=model.config,
      params=model.params,
      tokenizer=model.tokenizer,
      chat=ev.chat,
      seed=config.seed,
      num_fewshot=ev.num_fewshot,
      batch_size=ev.batch_size,
      mesh=model.mesh,
      rules=model.rules,
      samples=samples,
  )
  if published:
    # Copy tasks' length ratio in the model's tokens (Sec. 2.3.4).
    tokenizer = model.tokenizer
    metrics.update(
        darumeru_published.published_scores(
            suite,
            samples,
            lambda text: len(tokenizer.encode(text, add_special_tokens=False)),
        )
    )
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "metrics.json"), "w") as f:
    json.dump(metrics, f, indent=1, sort_keys=True)
  with open(os.path.join(out_dir, "samples.jsonl"), "w", encoding="utf-8") as f:
    f.writelines(json.dumps(s, ensure_ascii=False, default=str) + "\n" for s in samples)
  return dict(metrics, model=os.path.basename(os.path.normpath(model_dir)))
