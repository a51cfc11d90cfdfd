"""The evaluate stage of native alignment: the student before and after CPT on the benchmarks the
paper reports (Liang et al. 2024, arXiv:2412.03253) — ArabicMMLU, EXAMS, ACVA and AraTrust as
few-shot multiple choice from local files in their published layouts — and harmlessness /
helpfulness on BeaverTails-style prompts by a pairwise judge (after vs before, both orders).

Held-out perplexity and the offline suite run inside the CPT stage (`config.evals`), so they
appear there, before and after training. Everything here is optional: with no benchmark file and
no safety prompts configured the stage records nothing.
"""

from __future__ import annotations

import os
from typing import Any

from langshift.generation.interface import GenerationOptions
from langshift.recipes import roles

BENCHMARKS = ("arabic_mmlu", "exams", "acva", "aratrust")


def check_evaluate_config(ev, where: str) -> None:
  for key in BENCHMARKS + ("safety_prompts",):
    if ev[key] and not os.path.exists(ev[key]):
      raise ValueError(f"{where}.{key}={ev[key]!r}: no such file or directory")
  if ev.safety_prompts:
    roles.check_role(ev.judge, f"{where}.judge")


def _student(config, model_dir: str, batch_size: int):
  """A local generator on the student checkpoint (its config, params and tokenizer score too),
  prompting in the run's chat template (`data.chat_template`): the student before CPT is a base
  model with none of its own, and before and after answer in the same format."""
  return roles.make_generator(
      roles.student_role(config, model_dir, dtype="float32", batch_size=batch_size),
      num_devices=config.mesh.num_devices,
  )


def evaluate(config, *, before: str, after: str, out_dir: str) -> dict[str, Any]:
  """Metrics `before/...` and `after/...` for each benchmark suite, and `judge_*` for the pair."""
  # pylint: disable=import-outside-toplevel
  from langshift.recipes.native_alignment.arabic_benchmarks import (
      build_arabic_suite,
      evaluate_arabic_suite,
  )
  from langshift.recipes.native_alignment.beavertails import load_safety_prompts

  ev = config.native_align.evaluate
  given = {k: ev[k] for k in BENCHMARKS if ev[k]}
  if not given and not ev.safety_prompts:
    return {}
  students = {
      tag: _student(config, path, ev.batch_size)
      for tag, path in (("before", before), ("after", after))
  }
  metrics: dict[str, Any] = {}
  if given:
    suite = build_arabic_suite(
        os.path.join(out_dir, "arabic_suite"), num_fewshot=ev.num_fewshot, **given
    )
    for tag, gen in students.items():
      metrics.update(
          evaluate_arabic_suite(
              suite,
              config=gen.config,
              params=gen.params,
              tokenizer=gen.tokenizer,
              max_examples=ev.max_examples or None,
              batch_size=ev.batch_size,
              mesh=gen.mesh,
              rules=gen.rules,
              prefix=f"{tag}/eval",
          )
      )
  if ev.safety_prompts:
    prompts = load_safety_prompts(ev.safety_prompts, max_prompts=ev.max_judge_prompts or None)
    metrics.update(judge_students(config, prompts, students["after"], students["before"]))
  return metrics


def judge_students(config, prompts, after, before) -> dict[str, Any]:
  """Harmlessness and helpfulness of `after` against `before` (generators or their answers) by
  `native_align.evaluate.judge`, with that role's generation options (max_new_tokens,
  temperature): `judge_<criterion>/...` (`safety_judge.py`) and `judge_prompts`."""
  from langshift.recipes.native_alignment.safety_judge import judge_safety  # pylint: disable=import-outside-toplevel

  ev = config.native_align.evaluate
  metrics = judge_safety(
      prompts,
      after,
      before,
      roles.make_generator(ev.judge),
      generation_options=GenerationOptions(max_new_tokens=ev.answer_max_new_tokens),
      judge_options=roles.generation_options(ev.judge, seed=config.seed),
  )
  return {**metrics, "judge_prompts": len(prompts)}
