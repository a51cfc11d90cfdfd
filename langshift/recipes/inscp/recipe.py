"""InsCP end to end: the `inscp` recipe's stages.

Instruction continual pre-training: Chen & Lee 2024, "InstructionCP: A fast approach to transfer
Large Language Models into target language", arXiv:2405.20175. An *instruct* model continues
pre-training on target-language text wrapped as the assistant reply behind an empty user turn of
its own chat template (Sec. 3), plain causal-LM loss, all parameters; the baseline "orgCP" is the
same data without the template. Data of low perplexity under the model (<= 15) is what made it
work (Sec. 4).

Stages (`langshift/recipes/recipe.py`: fingerprinted, resumable), each writing one folder:

  scores/   (when a perplexity bound is set) the perplexity of every record of every data source
            under the starting model (`langshift.score`: sharded over all processes, exactly
            once across kills); selection then keeps the records within the bounds;
  cpt/      continual pre-training through the engine (`train_and_evaluate`) from the starting
            model, on config.data with each source's template checked against `inscp.mode`;
            `config.evals` (response-language rate, held-out perplexity, the retention suite)
            run before the first step and at the end, so both sides are in its summary;
            `cpt/hf` is the adapted chat model;
  evaluate/ (when configured) retention, before and after: TMMLU+ from local files in its
            published layout (`inscp.tmmluplus.data_dir`, `tmmluplus.py`), and pairwise
            judging of the adapted model against the starting one on a prompt file
            (`inscp.judge.prompts`), both orders, per prompt language, with a pluggable judge
            (a local model or an OpenAI-compatible server): a preference score where 50 is
            parity, not comparable with MT-Bench's 1-10 grades; unparsed verdicts are counted,
            not scored; and the paper's MT-Bench (`inscp.mt_bench`: FastChat's files, single-
            answer grading of both models, `before/mt_bench/score`, `after/mt_bench/score`).
            The paper's lm-eval benchmarks (TruthfulQA, ToxiGen, ARC, HellaSwag, MMLU) are an
            `lm_eval_tasks` entry of `config.evals` in the published setting: they run in cpt/,
            before the first step and at the end.

The starting model is `inscp.instruct` (a Hugging Face directory), or the export of a finished
LEP workdir (`inscp.lep_workdir`: its `lep_instruct/`, the instruct model with a new tokenizer and
propagated embeddings, Tikhomirov & Chernyshev 2024, arXiv:2412.21140), so a new tokenizer and
InsCP combine.
"""

from __future__ import annotations

import json
import os
from typing import Any

from langshift.data import config as data_config_lib
from langshift.recipes import judged_benchmarks, judging, roles, training
from langshift.recipes.inscp import config as inscp_config_lib
from langshift.recipes.inscp.config import starting_model
from langshift.recipes.recipe import Recipe, Stage, StageContext

SCORE_SOURCE_FIELDS = (
    "path",
    "format",
    "text_field",
    "text_unit",
    "qa_split",
    "prompt_field",
    "response_field",
)


def _selecting(config) -> bool:
  """Whether a perplexity bound is set (then the score stage runs and selection applies)."""
  inscp = config.inscp
  return inscp.max_perplexity is not None or inscp.min_perplexity is not None


def _start(config) -> dict[str, Any]:
  """The starting model, and the LEP export's stage fingerprint when it is one: a rerun on
  another export is a changed input."""
  inscp = config.inscp
  fingerprint = ""
  if inscp.lep_workdir:
    with open(os.path.join(inscp.lep_workdir, "stages", "propagate.json")) as f:
      fingerprint = json.load(f)["fingerprint"]
  return {"start": starting_model(inscp), "start.fingerprint": fingerprint}


def _score_inputs(config) -> dict[str, Any]:
  inputs = _start(config)
  for src in data_config_lib.resolve_sources(config.data):
    inputs.update({f"data.sources.{src.name}.{f}": src[f] for f in SCORE_SOURCE_FIELDS})
  return inputs


def score_sources(ctx: StageContext) -> dict[str, Any]:
  """Stage 1: every source's records scored under the starting model (`langshift.score`)."""
  # pylint: disable=import-outside-toplevel
  import jax
  from jax.experimental import multihost_utils

  from langshift import score

  config, out_dir = ctx.config, ctx.paths["score"]
  inscp, hosts = config.inscp, jax.process_count()
  scorer: list = []  # one model load for every source

  def make_scorer():
    if not scorer:
      scorer.append(
          score.local_scorer(
              starting_model(inscp),
              max_length=inscp.score.max_length,
              rows_per_call=inscp.score.rows_per_call,
              dtype=inscp.score.dtype,
              num_devices=config.mesh.num_devices,
          )
      )
    return scorer[0]

  summary = {}
  for src in data_config_lib.resolve_sources(config.data):
    result = score.score_corpus(
        src,
        os.path.join(out_dir, src.name),
        make_scorer,
        batch_size=inscp.score.batch_size,
        shard_size=inscp.score.shard_size,
        on_bad_record=config.data.on_bad_record,
        name=os.path.basename(os.path.normpath(starting_model(inscp))),
        barrier=(lambda tag: multihost_utils.sync_global_devices(tag)) if hosts > 1 else None,
        process_index=jax.process_index(),
        process_count=hosts,
    )
    summary.update({f"{src.name}/{k}": v for k, v in result.items()})
  return summary


def continual_pretraining(ctx: StageContext) -> dict[str, Any]:
  """Stage 2: the engine's run from the starting model on the (selected) sources."""
  config, p = ctx.config, ctx.paths
  inscp = config.inscp
  data = config.copy_and_resolve_references().data
  if _selecting(config):
    with data.unlocked():
      for name in data.sources.keys():
        data.sources[name].update(
            perplexity_scores=os.path.join(p["score"], name, "scores.npy"),
            max_perplexity=inscp.max_perplexity,
            min_perplexity=inscp.min_perplexity,
        )
  cpt = training.training_config(config, init_from_hf=starting_model(inscp), data=data)
  summary = training.train_stage("cpt", cpt, p["cpt"])
  if _selecting(config):
    summary.update(_selection_counts(config, p["score"]))
  return summary


def _selection_counts(config, score_dir: str) -> dict[str, int]:
  """`<source>/selected` of `<source>/samples`: what the perplexity bounds kept."""
  # pylint: disable=import-outside-toplevel
  from langshift.data.selection import load_scores, select_by_perplexity

  inscp, counts = config.inscp, {}
  for name in config.data.sources.keys():
    scores = load_scores(os.path.join(score_dir, name, "scores.npy"))
    kept = select_by_perplexity(
        scores, max_perplexity=inscp.max_perplexity, min_perplexity=inscp.min_perplexity
    )
    counts.update({f"{name}/samples": len(scores), f"{name}/selected": len(kept)})
  return counts


def evaluate_retention(ctx: StageContext) -> dict[str, Any]:
  """Stage 3: TMMLU+ before/after (`before/tmmluplus/...`, `after/tmmluplus/...`), the
  pairwise judge (`judge/<lang>/score`) and MT-Bench before/after (`<tag>/mt_bench/...`)."""
  config, out_dir = ctx.config, ctx.paths["evaluate"]
  export = os.path.join(ctx.paths["cpt"], "hf")
  inscp = config.inscp
  models = {"after": export, "before": starting_model(inscp)}
  metrics: dict[str, Any] = {}
  if inscp.tmmluplus.data_dir:
    out = os.path.join(out_dir, "tmmluplus")
    metrics.update(
        _tmmluplus(
            inscp.tmmluplus,
            models,
            out,
            config.mesh.num_devices,
            chat_template=roles.run_chat_template(config),
        )
    )
  if inscp.judge.prompts:
    metrics.update(judge_against_start(config, models, out_dir))
  metrics.update(
      judged_benchmarks.run(
          inscp,
          {"before": models["before"], "after": models["after"]},
          out_dir,
          num_devices=config.mesh.num_devices,
          chat_template=roles.run_chat_template(config),
          seed=config.seed,
      )
  )
  return metrics


def _generator(model_dir: str, batch_size: int, num_devices: int, chat_template: str = ""):
  """A local generator on the starting or the adapted model, prompting in `chat_template` (the
  run's `data.chat_template`; "": the checkpoint's own), so both answer in one format."""
  role = roles.role_config(
      backend="local",
      hf_dir=model_dir,
      dtype="float32",
      batch_size=batch_size,
      chat_template=chat_template,
  )
  return roles.make_generator(role, num_devices=num_devices)


def _tmmluplus(
    cfg, models: dict[str, str], out_dir: str, num_devices: int = 0, *, chat_template: str = ""
) -> dict[str, float]:
  # pylint: disable=import-outside-toplevel
  from langshift.evaluation.harness import run_eval_suite
  from langshift.recipes.inscp.tmmluplus import build_tmmluplus_suite

  suite = build_tmmluplus_suite(cfg.data_dir, out_dir, num_fewshot=cfg.num_fewshot)
  metrics = {}
  for tag, model in models.items():
    gen = _generator(model, cfg.batch_size, num_devices, chat_template)
    metrics.update(
        run_eval_suite(
            suite,
            config=gen.config,
            params=gen.params,
            tokenizer=gen.tokenizer,
            chat=True,
            num_fewshot=cfg.num_fewshot,
            max_examples=cfg.max_examples or None,
            batch_size=cfg.batch_size,
            mesh=gen.mesh,
            rules=gen.rules,
            prefix=f"{tag}/tmmluplus",
        )
    )
  return metrics


def judge_against_start(config, models: dict[str, str], out_dir: str) -> dict[str, Any]:
  """The adapted model (A) against the starting model (B), judged in both orders per pair, per
  prompt language (`langshift.recipes.judging`): `judge/<lang>/score` (50: parity),
  `judge/<lang>/unparsed_verdicts`, `judge/<lang>/judged_pairs`; answers in judged.jsonl."""
  from langshift.evaluation.response_eval import load_response_prompts  # pylint: disable=import-outside-toplevel

  judge_cfg = config.inscp.judge
  prompts = load_response_prompts(judge_cfg.prompts, judge_cfg.max_prompts)
  return judging.judge_tuned_against_untuned(
      config,
      judge_cfg.role,
      [q.prompt for q in prompts],
      tuned=models["after"],
      untuned=models["before"],
      answer_max_new_tokens=judge_cfg.answer_max_new_tokens,
      batch_size=judge_cfg.batch_size,
      out_path=os.path.join(out_dir, "judged.jsonl"),
      languages=[q.language for q in prompts],
  )


RECIPE = Recipe(
    name="inscp",
    title="InsCP",
    section="inscp",
    section_config=inscp_config_lib.inscp_config,
    check=inscp_config_lib.check_config,
    required_settings=inscp_config_lib.REQUIRED_SETTINGS,
    required_inputs=inscp_config_lib.required_inputs,
    stages=(
        Stage(
            "score",
            "scores",
            score_sources,
            reads=("inscp.score", "data.on_bad_record"),
            inputs=_score_inputs,
            when=_selecting,
            resumable=True,  # the scoring job resumes its own shards
            collective=True,  # every process scores its share
        ),
        Stage(
            "cpt",
            "cpt",
            continual_pretraining,
            reads=("inscp.mode", "inscp.max_perplexity", "inscp.min_perplexity"),
            inputs=_start,
            trains="",
        ),
        Stage(
            "evaluate",
            "evaluate",
            evaluate_retention,
            reads=(
                "inscp.judge",
                "inscp.tmmluplus",
                "inscp.mt_bench",
                "seed",
                "data.chat_template",
            ),
            inputs=_start,
            when=lambda config: bool(
                config.inscp.judge.prompts
                or config.inscp.tmmluplus.data_dir
                or judged_benchmarks.configured(config.inscp)
            ),
        ),
    ),
    export=lambda ctx: os.path.join(ctx.paths["cpt"], "hf"),
    export_name="the adapted chat model",
)
