"""MT-Bench and Arena-Hard in a recipe's evaluate stage: the config sections, their checks, the
inputs a user must give, and the runs on the stage's models.

  config.<recipe>.mt_bench = mt_bench_config()      # Zheng et al. 2023, arXiv:2306.05685
  config.<recipe>.arena_hard = arena_hard_config()  # Li et al. 2024, arXiv:2406.11939

Both read the published file layouts from local paths (FastChat's `llm_judge` question, reference
answer and judge-prompt files; Arena-Hard-Auto's questions and its fixed baseline's answers) and
run only when `questions` is given; the judge is a role (an OpenAI-compatible server by default,
or a local checkpoint). The protocols are `langshift.evaluation.mt_bench` / `arena_hard`; here
each model of the stage (e.g. `{"before": start, "after": export}`) answers through its local
generator in the run's chat template and is judged, and the metrics come back under
`<tag>/mt_bench/...` (`mt_bench/...` for the tag ""), the files under `<out_dir>/mt_bench/<tag>/`.
"""

from __future__ import annotations

import os
from typing import Any

import ml_collections

from langshift.evaluation import arena_hard, mt_bench
from langshift.recipes import roles


def mt_bench_config() -> ml_collections.ConfigDict:
  """`config.<recipe>.mt_bench`: questions "" skips it."""
  return ml_collections.ConfigDict(
      dict(
          questions="",  # FastChat's data/mt_bench/question.jsonl
          judge_prompts="",  # FastChat's data/judge_prompts.jsonl
          references="",  # FastChat's data/mt_bench/reference_answer/gpt-4.jsonl
          greedy=False,  # True: answer greedily (else FastChat's per-category temperatures)
          answer_max_new_tokens=mt_bench.ANSWER_MAX_NEW_TOKENS,
          batch_size=8,  # the answering model's generation batch
          judge=roles.role_config(backend="openai", max_new_tokens=mt_bench.JUDGE_MAX_NEW_TOKENS),
      )
  )


def arena_hard_config() -> ml_collections.ConfigDict:
  """`config.<recipe>.arena_hard`: questions "" skips it."""
  return ml_collections.ConfigDict(
      dict(
          questions="",  # Arena-Hard-Auto's question.jsonl (v0.1 or v2.0 layout)
          baseline="",  # the fixed baseline's answers (v0.1: model_answer/gpt-4-0314.jsonl)
          judge_prompt="",  # JSON with system_prompt, prompt_template ("": v0.1's)
          answer_max_new_tokens=arena_hard.ANSWER_MAX_NEW_TOKENS,
          batch_size=8,
          judge=roles.role_config(backend="openai", max_new_tokens=arena_hard.JUDGE_MAX_NEW_TOKENS),
      )
  )


def missing_inputs(section, where: str) -> list[str]:
  """The keys a user must still give for the judged benchmarks they asked for (`questions`
  set): their other files and the judge's endpoint or checkpoint."""
  missing = []
  for name, files in (("mt_bench", ("judge_prompts",)), ("arena_hard", ("baseline",))):
    cfg = section.get(name)
    if cfg is None or not cfg.questions:
      continue
    missing += [f"{where}.{name}.{f}" for f in files if not cfg[f]]
    judge = cfg.judge
    if judge.backend == "openai" and not judge.base_url:
      missing.append(f"{where}.{name}.judge.base_url")
    elif judge.backend == "local" and not judge.hf_dir:
      missing.append(f"{where}.{name}.judge.hf_dir")
  return missing


def check(section, where: str) -> None:
  """One-line errors before any stage runs: every file read in its layout, the judge role."""
  cfg = section.get("mt_bench")
  if cfg is not None and cfg.questions:
    _check_sizes(cfg, f"{where}.mt_bench")
    mt_bench.read_inputs(cfg.questions, cfg.judge_prompts, cfg.references or None)
    roles.check_role(cfg.judge, f"{where}.mt_bench.judge")
  cfg = section.get("arena_hard")
  if cfg is not None and cfg.questions:
    _check_sizes(cfg, f"{where}.arena_hard")
    arena_hard.read_inputs(cfg.questions, cfg.baseline, None, cfg.judge_prompt or None)
    roles.check_role(cfg.judge, f"{where}.arena_hard.judge")


def _check_sizes(cfg, where: str) -> None:
  if cfg.answer_max_new_tokens < 1 or cfg.batch_size < 1:
    raise ValueError(
        f"{where}: answer_max_new_tokens={cfg.answer_max_new_tokens} and "
        f"batch_size={cfg.batch_size} must be >= 1"
    )


def _model(model_dir: str, batch_size: int, num_devices: int, chat_template: str):
  role = roles.role_config(
      backend="local",
      hf_dir=model_dir,
      dtype="float32",
      batch_size=batch_size,
      chat_template=chat_template,
  )
  return roles.make_generator(role, num_devices=num_devices)


def _tagged(tag: str, metrics: dict[str, float]) -> dict[str, float]:
  return {f"{tag}/{k}" if tag else k: v for k, v in metrics.items()}


def run(
    section,
    models: dict[str, str],
    out_dir: str,
    *,
    num_devices: int = 0,
    chat_template: str = "",
    seed: int = 0,
) -> dict[str, Any]:
  """MT-Bench and Arena-Hard (those whose `questions` are set) on every model of `models`
  ({tag: HF directory}); the metrics, tagged."""
  metrics: dict[str, Any] = {}
  cfg = section.get("mt_bench")
  if cfg is not None and cfg.questions:
    inputs = mt_bench.read_inputs(cfg.questions, cfg.judge_prompts, cfg.references or None)
    judge, judge_name = roles.make_generator(cfg.judge), roles.role_name(cfg.judge)
    for tag, model_dir in models.items():
      found = mt_bench.run(
          inputs,
          judge=judge,
          judge_name=judge_name,
          output_dir=os.path.join(out_dir, "mt_bench", tag),
          model=_model(model_dir, cfg.batch_size, num_devices, chat_template),
          model_name=os.path.basename(os.path.normpath(model_dir)),
          greedy=cfg.greedy,
          answer_max_new_tokens=cfg.answer_max_new_tokens,
          judge_max_new_tokens=cfg.judge.max_new_tokens,
          judge_batch_size=cfg.judge.batch_size,
          seed=seed,
      )
      metrics.update(_tagged(tag, found))
  cfg = section.get("arena_hard")
  if cfg is not None and cfg.questions:
    inputs = arena_hard.read_inputs(cfg.questions, cfg.baseline, None, cfg.judge_prompt or None)
    judge, judge_name = roles.make_generator(cfg.judge), roles.role_name(cfg.judge)
    for tag, model_dir in models.items():
      found = arena_hard.run(
          inputs,
          judge=judge,
          judge_name=judge_name,
          output_dir=os.path.join(out_dir, "arena_hard", tag),
          model=_model(model_dir, cfg.batch_size, num_devices, chat_template),
          model_name=os.path.basename(os.path.normpath(model_dir)),
          answer_max_new_tokens=cfg.answer_max_new_tokens,
          judge_max_new_tokens=cfg.judge.max_new_tokens,
          judge_batch_size=cfg.judge.batch_size,
      )
      metrics.update(_tagged(tag, found))
  return metrics


def configured(section) -> bool:
  """Whether either benchmark runs under this section."""
  return any(
      section.get(n) is not None and section[n].questions for n in ("mt_bench", "arena_hard")
  )
