"""Runs evaluation tasks and suites; returns flat metrics named `eval/<task>/<metric>`.

Backends: a *scorer* (next-token log-probs and text NLL; `scoring.LocalScorer`) for choice and
perplexity tasks, and a *generator* (`generation.interface.TextGenerator`, local or
OpenAI-compatible) for generation tasks. Tasks whose backend is missing are skipped with a log
line, so an HTTP-only model still gets its generation tasks scored.

`eval/micro_avg` is the unweighted mean of the tasks' main scores (the summary score of the
Darumeru benchmark, Tikhomirov & Chernyshev 2024, arXiv:2412.21140), over tasks with `in_average`
(perplexity never counts).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np
from absl import logging

from langshift.evaluation import metrics as metrics_lib
from langshift.evaluation.language_id import (
    detect_language,
    language_alignment,
    normalize_language_tag,
)
from langshift.evaluation.prompts import build_prompts, chat_messages
from langshift.evaluation.tasks import (
    Example,
    Suite,
    TaskSpec,
    load_examples,
    load_suite,
    resolve_suite_path,
)
from langshift.generation.interface import GenerationOptions


def surface_variants(label: str) -> tuple[str, ...]:
  """Spellings a model may use for an answer label: as is, lower/upper case, after a space."""
  forms = dict.fromkeys([label, label.lower(), label.upper(), label.capitalize()])
  return tuple(dict.fromkeys([f for base in forms for f in (base, " " + base)]))


def choice_token_ids(encode: Callable[[str], Sequence[int]], label: str) -> tuple[int, ...]:
  """First-token ids of the label's single-token surface variants (falls back to the first token
  of the label itself when no variant is a single token)."""
  ids = []
  for form in surface_variants(label):
    toks = list(encode(form))
    if len(toks) == 1:
      ids.append(int(toks[0]))
  if not ids:
    toks = list(encode(label))
    if not toks:
      raise ValueError(f"answer label {label!r} encodes to no tokens")
    ids = [int(toks[0])]
  return tuple(dict.fromkeys(ids))


def choice_scores(logprobs: np.ndarray, variant_ids: Sequence[Sequence[int]]) -> np.ndarray:
  """[num_choices]: each choice's score is the max log-prob over its variants' tokens."""
  return np.asarray([max(logprobs[i] for i in ids) for ids in variant_ids])


def _task_prompts(spec, examples, render_chat, seed):
  if spec.fewshot_path:
    all_shots = dataclasses.replace(spec, max_examples=None)
    pool, same = load_examples(all_shots, spec.fewshot_path), False
  else:
    pool, same = examples, True
  return build_prompts(
      spec, examples, shots_pool=pool, same_pool=same, render_chat=render_chat, seed=seed
  )


def run_choice_task(
    spec: TaskSpec, examples: Sequence[Example], scorer, *, chat: bool, seed: int = 0
) -> dict[str, float]:
  render = scorer.render_chat if chat else None
  prompts = _task_prompts(spec, examples, render, seed)
  logprobs = scorer.next_token_logprobs(prompts, chat=chat)
  cache: dict[str, tuple[int, ...]] = {}
  correct = []
  for example, row in zip(examples, logprobs):
    ids = [cache.setdefault(c, choice_token_ids(scorer.encode, c)) for c in example.choices]
    predicted = example.choices[int(np.argmax(choice_scores(row, ids)))]
    correct.append(predicted == example.target)
  return {"accuracy": float(np.mean(correct))}


def run_generation_task(
    spec: TaskSpec, examples: Sequence[Example], generator, *, chat: bool, seed: int = 0
) -> dict[str, float]:
  options = GenerationOptions(
      max_new_tokens=spec.max_new_tokens, seed=seed, stop=() if chat else spec.stop
  )
  if chat:
    outputs = generator.chat([chat_messages(e) for e in examples], options)
  else:
    outputs = generator.complete(_task_prompts(spec, examples, None, seed), options)
  outputs = [o.strip() for o in outputs]
  if spec.metric == "language_alignment":
    expected = [e.language or detect_language(e.prompt) for e in examples]
    return {"language_alignment": language_alignment(outputs, expected)}
  metric = metrics_lib.GENERATION_METRICS[spec.metric]
  return {spec.metric: float(np.mean([metric(o, e.target) for o, e in zip(outputs, examples)]))}


def run_perplexity_task(spec: TaskSpec, examples: Sequence[Example], scorer) -> dict[str, float]:
  """Token-weighted perplexity overall and per language (`ppl_<lang>`)."""
  scored = scorer.token_nll([e.target for e in examples])
  totals: dict[str, list[float]] = {}
  for e, (nll, n) in zip(examples, scored):
    for key in ("ppl", f"ppl_{normalize_language_tag(e.language)}" if e.language else None):
      if key:
        acc = totals.setdefault(key, [0.0, 0])
        acc[0] += nll
        acc[1] += n
  return {k: math.exp(nll / max(n, 1)) for k, (nll, n) in totals.items()}


def main_score_name(spec: TaskSpec) -> str | None:
  if spec.type == "choice":
    return "accuracy"
  if spec.type == "generation":
    return spec.metric
  return None


def run_task(
    spec: TaskSpec, *, scorer=None, generator=None, chat: bool = False, seed: int = 0
) -> dict[str, float] | None:
  """Metrics of one task (unprefixed), or None when its backend is missing."""
  needs_scorer = spec.type in ("choice", "perplexity")
  if (needs_scorer and scorer is None) or (spec.type == "generation" and generator is None):
    logging.info(
        "skipping eval task %s: no %s backend",
        spec.name,
        "scoring" if needs_scorer else "generation",
    )
    return None
  examples = load_examples(spec)
  if spec.type == "choice":
    return run_choice_task(spec, examples, scorer, chat=chat, seed=seed)
  if spec.type == "generation":
    return run_generation_task(spec, examples, generator, chat=chat, seed=seed)
  return run_perplexity_task(spec, examples, scorer)


def run_eval_suite(
    suite: Suite | str,
    *,
    scorer=None,
    generator=None,
    config=None,
    params=None,
    tokenizer=None,
    chat: bool = False,
    seed: int = 0,
    max_examples: int | None = None,
    batch_size: int = 8,
    mesh=None,
    rules=None,
    prefix: str = "eval",
) -> dict[str, float]:
  """Runs every task of a suite; returns {"eval/<task>/<metric>": value, "eval/micro_avg": mean}.

  Args:
    suite: a `Suite`, a suite JSON path, or a built-in suite name (e.g. "mini_darumeru").
    scorer, generator: backends; when absent and `config`, `params`, `tokenizer` are given, local
      ones are built on those (what the trainer passes every N steps).
    chat: instruct-model protocol (zero-shot through the chat template) instead of k-shot.
    max_examples: cap per task, for quick training-time checks.
  """
  if isinstance(suite, str):
    overrides = {} if max_examples is None else {"max_examples": max_examples}
    suite = load_suite(resolve_suite_path(suite), **overrides)
  elif max_examples is not None:
    suite = Suite(
        suite.name, tuple(dataclasses.replace(t, max_examples=max_examples) for t in suite.tasks)
    )
  if params is not None and (scorer is None or generator is None):
    # pylint: disable=import-outside-toplevel
    from langshift.evaluation.scoring import LocalScorer
    from langshift.generation.local_backend import LocalGenerator

    scorer = scorer or LocalScorer(config, params, tokenizer, batch_size=batch_size)
    generator = generator or LocalGenerator(
        config, params, tokenizer, batch_size=batch_size, mesh=mesh, rules=rules
    )
  results: dict[str, float] = {}
  main_scores = []
  for spec in suite.tasks:
    task_metrics = run_task(spec, scorer=scorer, generator=generator, chat=chat, seed=seed)
    if task_metrics is None:
      continue
    for name, value in task_metrics.items():
      results[f"{prefix}/{spec.name}/{name}"] = float(value)
    main = main_score_name(spec)
    if spec.in_average and main in task_metrics:
      main_scores.append(task_metrics[main])
  if main_scores:
    results[f"{prefix}/micro_avg"] = float(np.mean(main_scores))
  return results
