"""lm-evaluation-harness tasks as an evaluation of the training engine (`kind="lm_eval_tasks"`).

  config.evals.harness = lm_eval_tasks(tasks=["arc_easy", "hellaswag"], num_fewshot=0, limit=100)
  config.evals.open_llm = lm_eval_tasks(tasks="arc_challenge:25,hellaswag:10,mmlu:5")

A task written `name:k` runs k-shot whatever `num_fewshot` says (the Open LLM Leaderboard's
suite gives each task its own count); tasks of one count share one `simple_evaluate` call.

Every call wraps the job's current params, on the run's mesh, in the `langshift` model type
(`LangshiftLM.from_params`, langshift/evaluation/lm_eval_backend.py) and runs lm-eval's
`simple_evaluate` on the tasks; each task's metrics become `<prefix>/<task>/<metric>` (a
metric under a filter other than lm-eval's "none" gets `/<filter>`: `eval/gsm8k/exact_match/
strict-match`). Task names are resolved at build time, so a task lm-eval does not know fails
before the first training step, naming it. Where lm-eval reads its data from is lm-eval's
business (a local `include_path` of task YAMLs, the Hugging Face cache, or the Hub on a machine
with access).
"""

from __future__ import annotations

import difflib
import math
from typing import Any

from langshift.evaluation.evaluators import Evaluator


def flatten_results(results: dict[str, dict[str, Any]], prefix: str) -> dict[str, float]:
  """lm-eval's `results` ({task: {"acc,none": 0.5, "acc_stderr,none": ..., "alias": ...}}) as
  flat `<prefix>/<task>/<metric>[/<filter>]` floats; standard errors and non-numbers left out."""
  flat = {}
  for task, metrics in results.items():
    for key, value in metrics.items():
      metric, _, filter_name = key.partition(",")
      if not filter_name or "_stderr" in metric or isinstance(value, (str, bool)):
        continue
      try:
        number = float(value)
      except (TypeError, ValueError):
        continue
      if math.isnan(number):
        continue
      name = f"{prefix}/{task}/{metric}"
      flat[name if filter_name == "none" else f"{name}/{filter_name}"] = number
  return flat


def task_list(tasks) -> list[str]:
  """`tasks` as a list of names: a list/tuple, or one comma-separated string."""
  if isinstance(tasks, str):
    tasks = tasks.split(",")
  return [t.strip() for t in tasks if t and t.strip()]


def task_shots(tasks, num_fewshot: int, where: str) -> dict[str, int]:
  """{task: demonstrations (-1: the task's own count)} of `name` / `name:k` entries."""
  shots = {}
  for entry in task_list(tasks):
    name, sep, count = entry.partition(":")
    if sep and not (count.isdigit() and name):
      raise ValueError(f"{where}: {entry!r} is not a task name or name:k (k >= 0 demonstrations)")
    shots[name.strip()] = int(count) if sep else num_fewshot
  return shots


def check_tasks(tasks: list[str], task_manager, where: str) -> None:
  """A one-line error naming the first task (or group) lm-eval does not know."""
  known = set(task_manager.all_tasks)
  for task in tasks:
    if task not in known:
      close = difflib.get_close_matches(task, sorted(known), n=3)
      hint = f" (did you mean {', '.join(close)}?)" if close else ""
      raise ValueError(
          f"{where}: lm-eval knows no task {task!r}{hint}; give include_path= for a folder of "
          "task YAMLs"
      )


class LmEvalTasksEvaluator(Evaluator):
  """lm-eval tasks on the job's params (see the module docstring)."""

  def __init__(self, name: str, entry, ctx):
    super().__init__(name, entry)
    where = f"config.evals.{name}"
    try:
      # pylint: disable=import-outside-toplevel
      from lm_eval.tasks import TaskManager

      from langshift.evaluation.lm_eval_backend import LangshiftLM
    except ImportError as e:
      raise ValueError(
          f"{where}: lm_eval_tasks needs lm-evaluation-harness ({e}); install the extra: "
          "pip install -e .[lm_eval]"
      ) from None
    if ctx.tokenizer is None:
      raise ValueError(
          f"{where}: lm-eval tasks need a tokenizer (set config.tokenizer or config.init_from_hf)"
      )
    self.shots = task_shots(entry.tasks, entry.num_fewshot, f"{where}.tasks")
    self.tasks = list(self.shots)
    if not self.tasks:
      raise ValueError(f"{where}.tasks is empty: name lm-eval tasks, e.g. ['arc_easy']")
    if (
        entry.num_fewshot < -1
        or entry.limit < 0
        or entry.batch_size < 1
        or entry.max_length < 0
        or entry.max_gen_toks < 1
    ):
      raise ValueError(
          f"{where}: num_fewshot={entry.num_fewshot} must be >= -1, limit={entry.limit} >= 0, "
          f"batch_size={entry.batch_size} >= 1, max_length={entry.max_length} >= 0, "
          f"max_gen_toks={entry.max_gen_toks} >= 1"
      )
    from langshift.evaluation.scoring import resolve_bos  # pylint: disable=import-outside-toplevel

    try:
      resolve_bos(ctx.tokenizer, entry.bos)
    except ValueError as e:
      raise ValueError(f"{where}.bos: {e}") from None
    self.task_manager = TaskManager(include_path=entry.include_path or None)
    check_tasks(self.tasks, self.task_manager, f"{where}.tasks")
    self._lm_class, self._ctx, self._entry = LangshiftLM, ctx, entry
    # lm-eval's `limit`: a count of documents per task, or a fraction of them below 1.
    self._limit = (
        None if not entry.limit else (entry.limit if entry.limit < 1 else int(entry.limit))
    )
    self.metric = ""

  def __call__(self, params, step=None):
    import lm_eval  # pylint: disable=import-outside-toplevel

    ctx, entry = self._ctx, self._entry
    lm = self._lm_class.from_params(
        ctx.model_config,
        params,
        ctx.tokenizer,
        mesh=ctx.mesh,
        rules=ctx.rules,
        batch_size=entry.batch_size,
        max_length=entry.max_length or None,
        max_gen_toks=entry.max_gen_toks,
        bos=entry.bos,
    )
    by_shots: dict[int, list[str]] = {}
    for task, shots in self.shots.items():
      by_shots.setdefault(shots, []).append(task)
    metrics = {}
    for shots, tasks in by_shots.items():
      out = lm_eval.simple_evaluate(
          model=lm,
          tasks=tasks,
          num_fewshot=None if shots == -1 else shots,
          limit=self._limit,
          task_manager=self.task_manager,
          apply_chat_template=entry.chat,
          fewshot_as_multiturn=entry.chat and shots > 0,
          bootstrap_iters=0,
          log_samples=False,
          random_seed=entry.seed,
          numpy_random_seed=entry.seed,
          torch_random_seed=entry.seed,
          fewshot_random_seed=entry.seed,
      )
      metrics.update(flatten_results((out or {}).get("results", {}), self.prefix))
    if not self.metric and metrics:
      first = sorted(m for m in metrics if m.startswith(f"{self.prefix}/{self.tasks[0]}/"))
      self.metric = first[0] if first else sorted(metrics)[0]
    return metrics

  def headline(self, before, after):
    if not self.metric or self.metric not in after:
      return None
    start = f"{before[self.metric]:.3f} -> " if self.metric in before else ""
    return f"{self.name} {self.metric} {start}{after[self.metric]:.3f}"
