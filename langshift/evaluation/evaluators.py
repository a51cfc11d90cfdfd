"""Evaluations the training engine runs on its current params: one interface, several kinds.

The engine receives a list of `Evaluator`s and knows only that each one maps params to flat
metrics and says when it wants to run. `build_evaluators(config.evals, context)` makes them from
the experiment's `evals` table, one entry per evaluation:

  config.evals.heldout = perplexity_eval(data=<a data config>, max_batches=4)
      token-weighted held-out perplexity -> `eval/perplexity`
  config.evals.handbook = suite_eval(suite="handbook_mini", every_steps=500, max_examples=8)
      a benchmark suite (langshift/evaluation/harness.py) -> `eval/<task>/<metric>`,
      `eval/micro_avg`
  config.evals.answers = response_eval(prompts="prompts.jsonl", max_examples=16)
      answers to a JSONL prompt file (langshift/evaluation/response_eval.py) ->
      `eval/language_match[/<lang>]`, `eval/reference_nll[/<lang>]`, `eval/response_chars`
  config.evals.harness = lm_eval_tasks(tasks=["arc_easy"], num_fewshot=0, limit=100)
      lm-evaluation-harness tasks on the `langshift` model type
      (langshift/evaluation/lm_eval_backend_evaluator.py) -> `eval/<task>/<metric>`

Every entry has `kind`, `every_steps` (0: only at the end of training), `at_start` (also before
the first step) and `prefix` (the metric namespace, "eval"). Building resolves everything an
evaluation will need (held-out batches tokenized, suite and task files read), so a misspelt
suite name or a missing file fails before the first training step.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
import os
from collections.abc import Callable
from typing import Any

import jax
import ml_collections

from langshift import config_lib
from langshift.data import config as data_config_lib
from langshift.generation.interface import GenerationOptions
from langshift.parallel.host_transfer import to_global

_COMMON_FIELDS = dict(kind="", every_steps=0, at_start=False, prefix="eval")


def perplexity_eval(**fields) -> ml_collections.ConfigDict:
  """An entry of `config.evals`: held-out perplexity of `data` (same schema as `config.data`)."""
  return _entry(_perplexity_fields(), fields, "perplexity_eval")


def suite_eval(**fields) -> ml_collections.ConfigDict:
  """An entry of `config.evals`: a benchmark suite (built-in name or suite JSON path)."""
  return _entry(_suite_fields(), fields, "suite_eval")


def response_eval(**fields) -> ml_collections.ConfigDict:
  """An entry of `config.evals`: response-language match and reference NLL on a prompt file."""
  return _entry(_response_fields(), fields, "response_eval")


def lm_eval_tasks(**fields) -> ml_collections.ConfigDict:
  """An entry of `config.evals`: lm-evaluation-harness tasks (an optional extra); `tasks` is a
  list of names or one comma-separated string."""
  if isinstance(fields.get("tasks"), str):
    fields["tasks"] = [t.strip() for t in fields["tasks"].split(",") if t.strip()]
  return _entry(_lm_eval_fields(), fields, "lm_eval_tasks")


def _perplexity_fields() -> dict[str, Any]:
  data = data_config_lib.default_data_config()
  data.shuffle = False  # held-out text is read once, in order
  return dict(
      _COMMON_FIELDS,
      kind="perplexity",
      at_start=True,
      max_batches=4,  # held-out batches of global_batch_size x seq_len (0: all)
      data=data,
  )


def _suite_fields() -> dict[str, Any]:
  return dict(
      _COMMON_FIELDS,
      kind="suite",
      suite="",  # a built-in suite name ("handbook_mini") or a suite JSON path
      max_examples=8,  # per task (0: every example)
      tasks="",  # comma-separated name patterns of the tasks to run ("*_ar,language_id"); "": all
      chat=False,  # instruct protocol: zero-shot through the chat template
      batch_size=8,
      bos="auto",  # prepend BOS as the tokenizer does ("auto"), always ("true") or never ("false")
      num_fewshot=-1,  # demonstrations per task (-1: each task's own count; 0 for chat)
      data_dir="",  # folder of a suite's user-supplied task files (the "darumeru" suite)
  )


def _response_fields() -> dict[str, Any]:
  return dict(
      _COMMON_FIELDS,
      kind="response",
      prompts="",  # JSONL: {"prompt", "language", optional "reference"} per line
      max_examples=16,  # per language (0: every prompt)
      max_new_tokens=64,
      chat=True,  # each prompt as a user turn of the chat template; False: raw continuation
      batch_size=8,
      bos="auto",  # for chat=False prompts and references, as in suite_eval
      reference_nll=True,  # also score the lines' `reference` answers
      # Decode through Hewitt et al. 2024's rule-based adapter ("all") or one of its ablations
      # ("no_eos", "no_uniform", "no_diversity"); "": plain decoding.
      rule_adapter="",
  )


def _lm_eval_fields() -> dict[str, Any]:
  return dict(
      _COMMON_FIELDS,
      kind="lm_eval_tasks",
      tasks=[],  # lm-eval task or group names (a list, or one comma-separated string)
      num_fewshot=-1,  # -1: each task's own
      limit=0.0,  # documents per task (0: all; below 1: a fraction of them)
      include_path="",  # a folder of extra task YAMLs (local data: dataset_path: json)
      chat=False,  # lm-eval's --apply_chat_template (few-shot as multi-turn when num_fewshot > 0)
      batch_size=8,
      max_length=0,  # tokens per forward pass (0: the model's max_position_embeddings)
      max_gen_toks=256,  # generate_until's default, as lm-eval's hf backend
      bos="auto",
      seed=0,  # lm-eval's random, numpy, torch and few-shot seeds
  )


_KINDS: dict[str, Callable[[], dict[str, Any]]] = {
    "perplexity": _perplexity_fields,
    "suite": _suite_fields,
    "response": _response_fields,
    "lm_eval_tasks": _lm_eval_fields,
}


def _entry(defaults: dict[str, Any], fields: dict[str, Any], where: str):
  config_lib.check_fields(fields, defaults, where)
  entry = ml_collections.ConfigDict(defaults)
  for key, value in fields.items():  # whole values: a data config replaces the default one
    entry[key] = value
  return entry


@dataclasses.dataclass(frozen=True)
class EvalContext:
  """What the engine hands every evaluation: the model, its placement, the tokenizer, shapes."""

  model: Any  # LlamaDecoder
  model_config: Any  # ModelConfig
  tokenizer: Any  # langshift.tokenization.Tokenizer or None
  mesh: jax.sharding.Mesh
  rules: tuple
  param_shardings: Any
  batch_sharding: jax.sharding.Sharding
  seq_len: int
  global_batch_size: int
  loss_chunk_size: int = 0
  # Where evaluations that generate write what they generated (`<name>-step<N>.jsonl`), so that
  # a metric can be read against the answers behind it; "" writes nothing.
  samples_dir: str = ""


class Evaluator:
  """Params -> flat metrics; `every_steps` / `at_start` say when the engine calls it."""

  def __init__(self, name: str, entry):
    self.name, self.every_steps, self.at_start = name, entry.every_steps, entry.at_start
    self.prefix = entry.prefix
    self.metric = ""  # the main metric, shown in the run's start and end lines

  def __call__(self, params, step: int | None = None) -> dict[str, float]:
    """Metrics of `params`; `step` (the training step, when the engine calls) names any samples
    the evaluation writes."""
    raise NotImplementedError

  def headline(self, before: dict[str, float], after: dict[str, float]) -> str | None:
    """A short phrase for the run's final log line, or None."""
    del before, after
    return None


class PerplexityEvaluator(Evaluator):
  """Token-weighted perplexity of fixed held-out batches (tokenized once, at build)."""

  def __init__(self, name: str, entry, ctx: EvalContext):
    super().__init__(name, entry)
    from langshift.data.pipeline import make_eval_batches  # pylint: disable=import-outside-toplevel
    from langshift.train.step import BATCH_KEYS, make_eval_step  # pylint: disable=import-outside-toplevel

    where = f"config.evals.{name}"
    if ctx.tokenizer is None:
      raise ValueError(
          f"{where}: perplexity needs a tokenizer (set config.tokenizer or " "config.init_from_hf)"
      )
    try:
      self.batches = make_eval_batches(
          entry.data,
          ctx.tokenizer,
          seq_len=ctx.seq_len,
          global_batch_size=ctx.global_batch_size,
          process_index=jax.process_index(),
          process_count=jax.process_count(),
          max_batches=entry.max_batches or None,
      )
    except (ValueError, FileNotFoundError) as e:
      raise type(e)(f"{where}.data: {e}") from e
    if not self.batches:
      raise ValueError(f"{where}.data: the held-out sources hold no text")
    self._keys, self._sharding = BATCH_KEYS, ctx.batch_sharding
    self._step = jax.jit(
        make_eval_step(ctx.model, ctx.loss_chunk_size),
        in_shardings=(ctx.param_shardings, ctx.batch_sharding),
    )
    self.metric = f"{self.prefix}/perplexity"

  def __call__(self, params, step=None):
    total, weight = 0.0, 0.0
    for batch in self.batches:
      s, w = self._step(params, to_global(batch, self._sharding, self._keys))
      total, weight = total + float(s), weight + float(w)
    return {self.metric: math.exp(total / max(weight, 1.0))}

  def headline(self, before, after):
    if self.metric in before and self.metric in after:
      return f"held-out perplexity {before[self.metric]:.3f} -> {after[self.metric]:.3f}"
    return None


class SuiteEvaluator(Evaluator):
  """A benchmark suite of choice, generation and perplexity tasks on the local params."""

  def __init__(self, name: str, entry, ctx: EvalContext):
    super().__init__(name, entry)
    # pylint: disable=import-outside-toplevel
    from langshift.evaluation.tasks import load_suite, resolve_suite_path

    where = f"config.evals.{name}.suite"
    if not entry.suite:
      raise ValueError(f"{where} is empty: give a built-in suite name or a suite JSON path")
    if ctx.tokenizer is None:
      raise ValueError(
          f"config.evals.{name}: a suite needs a tokenizer (set config.tokenizer or "
          "config.init_from_hf)"
      )
    try:
      path = resolve_suite_path(entry.suite)
    except FileNotFoundError as e:
      raise FileNotFoundError(f"{where}={entry.suite!r}: {e}") from e
    overrides = {"max_examples": entry.max_examples} if entry.max_examples else {}
    try:
      self.suite = load_suite(path, data_dir=entry.data_dir or None, **overrides)
    except ValueError as e:
      raise ValueError(f"{where}={entry.suite!r}: {e}") from e
    from langshift.evaluation.scoring import resolve_bos  # pylint: disable=import-outside-toplevel

    try:
      self._bos = resolve_bos(ctx.tokenizer, entry.bos)
    except ValueError as e:
      raise ValueError(f"config.evals.{name}.bos: {e}") from e
    if entry.num_fewshot < -1:
      raise ValueError(f"config.evals.{name}.num_fewshot={entry.num_fewshot}; expected >= -1")
    self._num_fewshot = None if entry.num_fewshot == -1 else entry.num_fewshot
    if entry.tasks:
      patterns = [t.strip() for t in entry.tasks.split(",") if t.strip()]
      chosen = tuple(
          t for t in self.suite.tasks if any(fnmatch.fnmatchcase(t.name, pat) for pat in patterns)
      )
      if not chosen:
        raise ValueError(
            f"config.evals.{name}.tasks={entry.tasks!r} matches no task of "
            f"{entry.suite!r} ({[t.name for t in self.suite.tasks]})"
        )
      self.suite = dataclasses.replace(self.suite, tasks=chosen)
    for task in self.suite.tasks:
      for file in (task.path, task.fewshot_path):
        if file and not os.path.exists(file):
          raise FileNotFoundError(f"{where}={entry.suite!r}: task {task.name}: no file {file}")
    self._ctx, self._chat, self._batch_size = ctx, entry.chat, entry.batch_size
    self.metric = f"{self.prefix}/micro_avg"

  def __call__(self, params, step=None):
    from langshift.evaluation.harness import run_eval_suite  # pylint: disable=import-outside-toplevel

    ctx = self._ctx
    return run_eval_suite(
        self.suite,
        config=ctx.model_config,
        params=params,
        tokenizer=ctx.tokenizer,
        chat=self._chat,
        num_fewshot=self._num_fewshot,
        bos=self._bos,
        batch_size=self._batch_size,
        mesh=ctx.mesh,
        rules=ctx.rules,
        prefix=self.prefix,
    )

  def headline(self, before, after):
    if self.metric not in after:
      return None
    start = f"{before[self.metric]:.3f} -> " if self.metric in before else ""
    return f"{self.name} micro-average {start}{after[self.metric]:.3f}"


class ResponseEvaluator(Evaluator):
  """Generates answers to a prompt file and measures their language (and reference NLL)."""

  def __init__(self, name: str, entry, ctx: EvalContext):
    super().__init__(name, entry)
    # pylint: disable=import-outside-toplevel
    from langshift.evaluation import response_eval as response_lib
    from langshift.evaluation.scoring import resolve_bos

    where = f"config.evals.{name}"
    if not entry.prompts:
      raise ValueError(f"{where}.prompts is empty: give a JSONL prompt file")
    if ctx.tokenizer is None:
      raise ValueError(
          f"{where}: responses need a tokenizer (set config.tokenizer or config.init_from_hf)"
      )
    if entry.max_new_tokens < 1 or entry.max_examples < 0 or entry.batch_size < 1:
      raise ValueError(
          f"{where}: max_new_tokens={entry.max_new_tokens}, batch_size={entry.batch_size} must "
          f"be >= 1 and max_examples={entry.max_examples} >= 0"
      )
    try:
      self.prompts = response_lib.load_response_prompts(entry.prompts, entry.max_examples)
    except (ValueError, FileNotFoundError) as e:
      raise type(e)(f"{where}.prompts: {e}") from e
    if entry.chat:
      from langshift.generation.chat_render import chat_renderer

      try:
        chat_renderer(ctx.tokenizer)
      except ValueError as e:
        raise ValueError(f"{where}.chat=True: {e}") from e
    try:
      self._bos = resolve_bos(ctx.tokenizer, entry.bos)
    except ValueError as e:
      raise ValueError(f"{where}.bos: {e}") from e
    self._processors = ()
    if entry.rule_adapter:
      from langshift.generation.logits_processors import rule_based_adapter

      try:
        self._processors = (rule_based_adapter(ctx.tokenizer, entry.rule_adapter),)
      except ValueError as e:
        raise ValueError(f"{where}.rule_adapter: {e}") from e
    self._ctx, self._entry, self._lib = ctx, entry, response_lib
    self.metric = f"{self.prefix}/language_match"

  def __call__(self, params, step=None):
    # pylint: disable=import-outside-toplevel
    from langshift.evaluation.scoring import LocalScorer
    from langshift.generation.local_backend import LocalGenerator

    ctx, entry = self._ctx, self._entry
    generator = LocalGenerator(
        ctx.model_config,
        params,
        ctx.tokenizer,
        batch_size=entry.batch_size,
        mesh=ctx.mesh,
        rules=ctx.rules,
        add_bos=self._bos,
        processors=self._processors,
    )
    scorer = None
    if entry.reference_nll:
      scorer = LocalScorer(
          ctx.model_config, params, ctx.tokenizer, batch_size=entry.batch_size, bos=self._bos
      )
    options = GenerationOptions(max_new_tokens=entry.max_new_tokens)
    records: list[dict] = []
    metrics = self._lib.evaluate_responses(
        self.prompts,
        generator,
        scorer,
        chat=entry.chat,
        options=options,
        prefix=self.prefix,
        records=records,
    )
    if ctx.samples_dir and step is not None and jax.process_index() == 0:
      _write_samples(os.path.join(ctx.samples_dir, f"{self.name}-step{step}.jsonl"), records)
    return metrics

  def headline(self, before, after):
    if self.metric not in after:
      return None
    start = f"{before[self.metric]:.3f} -> " if self.metric in before else ""
    return f"{self.name} response-language match {start}{after[self.metric]:.3f}"


def _write_samples(path: str, records) -> None:
  """One JSON line per prompt (prompt, language, response, detected language, match), written
  whole and renamed into place (a rerun at the same step replaces it)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    for record in records:
      f.write(json.dumps(record, ensure_ascii=False) + "\n")
  os.replace(path + ".tmp", path)


def _with_defaults(defaults: dict[str, Any], entry, where: str) -> ml_collections.ConfigDict:
  """The entry with every field its kind has (an entry written as a plain dict may give only
  some); unknown fields are an error naming them."""
  given = entry.to_dict() if isinstance(entry, ml_collections.ConfigDict) else dict(entry)
  config_lib.check_fields(given, defaults, where)
  full = ml_collections.ConfigDict(defaults)
  for key, value in given.items():
    if key == "data":
      data = data_config_lib.default_data_config()
      config_lib.check_fields(value, data, f"{where}.data")
      data.update(value)
      value = data
    full[key] = value
  return full


def _lm_eval_tasks_evaluator(name: str, entry, ctx: EvalContext) -> Evaluator:
  # pylint: disable-next=import-outside-toplevel
  from langshift.evaluation.lm_eval_backend_evaluator import LmEvalTasksEvaluator

  return LmEvalTasksEvaluator(name, entry, ctx)


_BUILDERS = {
    "perplexity": PerplexityEvaluator,
    "suite": SuiteEvaluator,
    "response": ResponseEvaluator,
    "lm_eval_tasks": _lm_eval_tasks_evaluator,
}


def build_evaluators(evals_config, ctx: EvalContext) -> list[Evaluator]:
  """One evaluator per entry of `config.evals`, in name order; bad entries are one-line errors."""
  evaluators, namespaces = [], {}
  for name in sorted(evals_config.keys()):
    entry = evals_config[name]
    where = f"config.evals.{name}"
    kind = entry.get("kind") if hasattr(entry, "get") else None
    if kind not in _KINDS:
      raise ValueError(f"{where}.kind={kind!r}; expected one of {tuple(_KINDS)}")
    entry = _with_defaults(_KINDS[kind](), entry, where)
    if entry.every_steps < 0:
      raise ValueError(f"{where}.every_steps={entry.every_steps}; expected >= 0")
    if not entry.prefix:
      raise ValueError(f"{where}.prefix is empty")
    # Two evaluations of one kind in one namespace would write the same metric names.
    if (kind, entry.prefix) in namespaces:
      raise ValueError(
          f"{where} and config.evals.{namespaces[kind, entry.prefix]} both write "
          f"{kind} metrics under {entry.prefix!r}: give one of them another prefix"
      )
    namespaces[kind, entry.prefix] = name
    evaluators.append(_BUILDERS[kind](name, entry, ctx))
  return evaluators
