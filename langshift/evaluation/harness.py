"""Runs evaluation tasks and suites; returns flat metrics named `eval/<task>/<metric>`.

Backends: a *scorer* (log-likelihoods of continuations and texts; `scoring.LocalScorer`) for
choice and perplexity tasks, and a *generator* (`generation.interface.TextGenerator`, local or
OpenAI-compatible) for generation tasks. Tasks whose backend is missing are skipped with a log
line, so an HTTP-only model still gets its generation tasks scored.

Choice tasks are scored as lm-evaluation-harness scores `multiple_choice` tasks: each label's
score is log p(delimiter + label | prompt) over all of the label's tokens; `accuracy` takes the
best score, `acc_norm` the best score per character of the label. `scoring: "first_token"` keeps
the single-next-token rule (the best log-prob over the label's one-token spellings) for tasks
whose labels are single tokens.

`eval/micro_avg` is the unweighted mean of the tasks' main scores (the summary score of the
Darumeru benchmark, Tikhomirov & Chernyshev 2024, arXiv:2412.21140), over tasks with `in_average`
(perplexity never counts). `eval/settings/*` record what the numbers depend on besides the model:
`bos` (1 when BOS was prepended), `chat` (1 for the instruct protocol) and `num_fewshot` (-1: each
task's own count).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Sequence

import numpy as np
from absl import logging

from langshift.evaluation import metrics as metrics_lib
from langshift.evaluation.prompts import (
    answer_delimiter,
    build_conversations,
    build_prompts,
    query_parts,
)
from langshift.evaluation.tasks import (
    Example,
    Suite,
    TaskSpec,
    load_examples,
    load_suite,
    resolve_suite_path,
)
from langshift.generation.interface import GenerationOptions
from langshift.text.language_id import (
    detect_language,
    language_alignment,
    normalize_language_tag,
)


def surface_variants(label: str) -> tuple[str, ...]:
  """Spellings a model may use for an answer label: as is, lower/upper case, after a space."""
  forms = dict.fromkeys([label, label.lower(), label.upper(), label.capitalize()])
  return tuple(dict.fromkeys([f for base in forms for f in (base, " " + base)]))


def choice_token_ids(encode: Callable[[str], Sequence[int]], label: str) -> tuple[int, ...]:
  """Ids of the label's single-token surface variants; a label without one is an error (its first
  token would stand for every label that starts the same way)."""
  ids = [int(t[0]) for t in (list(encode(f)) for f in surface_variants(label)) if len(t) == 1]
  if not ids:
    raise ValueError(
        f"answer label {label!r} has no single-token spelling: first_token scoring cannot tell "
        "it apart; use scoring='loglikelihood'"
    )
  return tuple(dict.fromkeys(ids))


def choice_scores(logprobs: np.ndarray, variant_ids: Sequence[Sequence[int]]) -> np.ndarray:
  """[num_choices]: each choice's score is the max log-prob over its variants' tokens."""
  return np.asarray([max(logprobs[i] for i in ids) for ids in variant_ids])


def _check_distinct(task: str, labels: Sequence[str], tokens: Sequence, *, shared=None) -> None:
  """Labels the scorer cannot tell apart (equal token sequences; for first-token scoring, any
  token in common) are an error naming them."""
  clash = shared or (lambda x, y: x == y)
  for i, label in enumerate(labels):
    for j in range(i):
      if clash(tokens[i], tokens[j]):
        raise ValueError(
            f"task {task}: answer labels {labels[j]!r} and {label!r} are scored as the same "
            f"token(s) {sorted(set(tokens[i]) & set(tokens[j]))}, so they always tie"
        )


def _shots_pool(spec: TaskSpec, examples: Sequence[Example]) -> tuple[Sequence[Example], bool]:
  if spec.fewshot_path:
    return load_examples(dataclasses.replace(spec, max_examples=None), spec.fewshot_path), False
  return examples, True


def task_prompts(spec, examples, render_chat, seed, num_fewshot=None) -> list[str]:
  pool, same = _shots_pool(spec, examples)
  return build_prompts(
      spec,
      examples,
      shots_pool=pool,
      same_pool=same,
      render_chat=render_chat,
      seed=seed,
      num_fewshot=num_fewshot,
  )


def run_choice_task(
    spec: TaskSpec,
    examples: Sequence[Example],
    scorer,
    *,
    chat: bool,
    seed: int = 0,
    num_fewshot: int | None = None,
    samples: list | None = None,
) -> dict[str, float]:
  """accuracy (and acc_norm with log-likelihood scoring); per-example records go to `samples`."""
  render = scorer.render_chat if chat else None
  prompts = task_prompts(spec, examples, render, seed, num_fewshot)
  if spec.scoring == "first_token":
    return _first_token_choice(spec, examples, prompts, scorer, samples)
  requests, owners = [], []
  for i, (example, prompt) in enumerate(zip(examples, prompts)):
    delimiter = answer_delimiter(spec, example, chat)
    encoded = [scorer.encode_pair(prompt, delimiter + c) for c in example.choices]
    _check_distinct(spec.name, example.choices, [tuple(cont) for _, cont in encoded])
    requests += encoded
    owners += [i] * len(encoded)
  scored = scorer.loglikelihood_tokens(requests)
  correct, correct_norm, start = [], [], 0
  for i, (example, prompt) in enumerate(zip(examples, prompts)):
    lls = np.asarray([s.logprob for s in scored[start : start + len(example.choices)]])
    start += len(example.choices)
    lengths = np.asarray([float(len(c)) for c in example.choices])
    pred, pred_norm = int(np.argmax(lls)), int(np.argmax(lls / lengths))
    gold = example.choices.index(example.target)
    correct.append(pred == gold)
    correct_norm.append(pred_norm == gold)
    if samples is not None:
      samples.append(
          dict(
              task=spec.name,
              index=i,
              prompt=prompt,
              choices=list(example.choices),
              loglikelihoods=lls.tolist(),
              pred=pred,
              pred_norm=pred_norm,
              gold=gold,
          )
      )
  return {"accuracy": float(np.mean(correct)), "acc_norm": float(np.mean(correct_norm))}


def _first_token_choice(spec, examples, prompts, scorer, samples) -> dict[str, float]:
  logprobs = scorer.next_token_logprobs(prompts)
  cache: dict[str, tuple[int, ...]] = {}
  correct = []
  for i, (example, prompt, row) in enumerate(zip(examples, prompts, logprobs)):
    ids = [cache.setdefault(c, choice_token_ids(scorer.encode, c)) for c in example.choices]
    _check_distinct(spec.name, example.choices, ids, shared=lambda x, y: set(x) & set(y))
    scores = choice_scores(row, ids)
    pred, gold = int(np.argmax(scores)), example.choices.index(example.target)
    correct.append(pred == gold)
    if samples is not None:
      samples.append(
          dict(
              task=spec.name,
              index=i,
              prompt=prompt,
              choices=list(example.choices),
              scores=scores.tolist(),
              pred=pred,
              gold=gold,
          )
      )
  return {"accuracy": float(np.mean(correct))}


def run_generation_task(
    spec: TaskSpec,
    examples: Sequence[Example],
    generator,
    *,
    chat: bool,
    seed: int = 0,
    num_fewshot: int | None = None,
    samples: list | None = None,
) -> dict[str, float]:
  options = GenerationOptions(
      max_new_tokens=spec.max_new_tokens, seed=seed, stop=() if chat else spec.stop
  )
  opened = any(query_parts(e)[2] is not None for e in examples)
  if chat and not opened:  # plain conversations go to the generator's chat entry point
    pool, same = _shots_pool(spec, examples)
    conversations = build_conversations(
        spec, examples, shots_pool=pool, same_pool=same, seed=seed, num_fewshot=num_fewshot
    )
    outputs = generator.chat(conversations, options)
  else:
    render = None
    if chat:
      render = getattr(generator, "render_chat", None)
      if render is None:
        raise ValueError(
            f"task {spec.name}: its records open the assistant's answer, which needs a local "
            "generator (one with render_chat) under the instruct protocol"
        )
    outputs = generator.complete(task_prompts(spec, examples, render, seed, num_fewshot), options)
  outputs = [o.strip() for o in outputs]
  if samples is not None:
    samples.extend(
        dict(task=spec.name, index=i, output=o, target=e.target)
        for i, (o, e) in enumerate(zip(outputs, examples))
    )
  if spec.metric == "language_alignment":
    expected = [e.language or detect_language(e.prompt) for e in examples]
    return {"language_alignment": language_alignment(outputs, expected)}
  if spec.metric in metrics_lib.TASK_METRICS:
    return {spec.metric: metrics_lib.TASK_METRICS[spec.metric](outputs, examples)}
  metric = metrics_lib.GENERATION_METRICS[spec.metric]
  scores = [
      max(metric(o, r) for r in (e.references or (e.target,))) for o, e in zip(outputs, examples)
  ]
  return {spec.metric: float(np.mean(scores))}


def count_words(text: str) -> int:
  """lm-eval's word count for word perplexity (whitespace-separated pieces)."""
  return len(re.split(r"\s+", text))


def run_perplexity_task(
    spec: TaskSpec, examples: Sequence[Example], scorer, *, samples: list | None = None
) -> dict[str, float]:
  """Rolling-window perplexity: per token (`ppl`), per byte (`bits_per_byte`,
  `byte_perplexity`) and per word (`word_perplexity`), overall and per language (`ppl_<lang>`,
  `bits_per_byte_<lang>`)."""
  texts = [e.target for e in examples]
  scored = scorer.loglikelihood_rolling(texts)
  totals: dict[str, list[float]] = {}
  for i, (e, s) in enumerate(zip(examples, scored)):
    lang = normalize_language_tag(e.language) if e.language else None
    for key in ("", lang):
      if key is None:
        continue
      acc = totals.setdefault(key, [0.0, 0, 0, 0])
      acc[0] -= s.logprob
      acc[1] += s.num_tokens
      acc[2] += len(e.target.encode("utf-8"))
      acc[3] += count_words(e.target)
    if samples is not None:
      samples.append(dict(task=spec.name, index=i, loglikelihood=s.logprob, tokens=s.num_tokens))
  out = {}
  for key, (nll, tokens, nbytes, words) in totals.items():
    suffix = f"_{key}" if key else ""
    out[f"ppl{suffix}"] = math.exp(nll / max(tokens, 1))
    out[f"bits_per_byte{suffix}"] = nll / max(nbytes, 1) / math.log(2)
    if not key:
      out["byte_perplexity"] = math.exp(nll / max(nbytes, 1))
      out["word_perplexity"] = math.exp(nll / max(words, 1))
  return out


def main_score_name(spec: TaskSpec) -> str | None:
  if spec.type == "choice":
    return "accuracy"
  if spec.type == "generation":
    return spec.metric
  return None


def run_task(
    spec: TaskSpec,
    *,
    scorer=None,
    generator=None,
    chat: bool = False,
    seed: int = 0,
    num_fewshot: int | None = None,
    samples: list | None = None,
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
  kwargs = dict(chat=chat, seed=seed, num_fewshot=num_fewshot, samples=samples)
  if spec.type == "choice":
    return run_choice_task(spec, examples, scorer, **kwargs)
  if spec.type == "generation":
    return run_generation_task(spec, examples, generator, **kwargs)
  return run_perplexity_task(spec, examples, scorer, samples=samples)


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
    num_fewshot: int | None = None,
    bos: str | bool | None = "auto",
    data_dir: str | None = None,
    batch_size: int = 8,
    mesh=None,
    rules=None,
    prefix: str = "eval",
    samples: list | None = None,
) -> dict[str, float]:
  """Runs every task of a suite; returns {"eval/<task>/<metric>": value, "eval/micro_avg": mean,
  "eval/settings/...": ...}.

  Args:
    suite: a `Suite`, a suite JSON path, or a built-in suite name (e.g. "handbook_mini").
    scorer, generator: backends; when absent and `config`, `params`, `tokenizer` are given, local
      ones are built on those (what the trainer passes every N steps), with `bos`.
    chat: instruct-model protocol (through the chat template) instead of plain text.
    max_examples: cap per task, for quick training-time checks.
    num_fewshot: demonstrations for every task (default: each task's own count for the base
      protocol, none for the instruct protocol).
    bos: "auto" (as the tokenizer does), "true" or "false"; for the local backends built here.
    data_dir: folder of the suite's task files, for suites that read user-supplied files.
    samples: a list that receives one record per scored example (prompts, log-likelihoods,
      predictions, outputs), for comparisons with other harnesses.
  """
  if isinstance(suite, str):
    overrides = {} if max_examples is None else {"max_examples": max_examples}
    suite = load_suite(resolve_suite_path(suite), data_dir=data_dir, **overrides)
  elif max_examples is not None:
    suite = Suite(
        suite.name, tuple(dataclasses.replace(t, max_examples=max_examples) for t in suite.tasks)
    )
  if num_fewshot is not None and num_fewshot < 0:
    raise ValueError(f"num_fewshot={num_fewshot}; expected >= 0")
  if params is not None and (scorer is None or generator is None):
    # pylint: disable=import-outside-toplevel
    from langshift.evaluation.scoring import LocalScorer, resolve_bos
    from langshift.generation.local_backend import LocalGenerator

    add_bos = resolve_bos(tokenizer, bos)
    scorer = scorer or LocalScorer(config, params, tokenizer, batch_size=batch_size, bos=add_bos)
    generator = generator or LocalGenerator(
        config, params, tokenizer, batch_size=batch_size, mesh=mesh, rules=rules, add_bos=add_bos
    )
  results: dict[str, float] = {}
  main_scores = []
  for spec in suite.tasks:
    task_metrics = run_task(
        spec,
        scorer=scorer,
        generator=generator,
        chat=chat,
        seed=seed,
        num_fewshot=num_fewshot,
        samples=samples,
    )
    if task_metrics is None:
      continue
    for name, value in task_metrics.items():
      results[f"{prefix}/{spec.name}/{name}"] = float(value)
    main = main_score_name(spec)
    if spec.in_average and main in task_metrics:
      main_scores.append(task_metrics[main])
  if main_scores:
    results[f"{prefix}/micro_avg"] = float(np.mean(main_scores))
  for name, value in getattr(scorer, "settings", {}).items():
    results[f"{prefix}/settings/{name}"] = float(value)
  results[f"{prefix}/settings/chat"] = float(chat)
  results[f"{prefix}/settings/num_fewshot"] = float(-1 if num_fewshot is None else num_fewshot)
  return results
