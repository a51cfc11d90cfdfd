"""InsCP end to end: `run_inscp(config, workdir)`.

Instruction continual pre-training: Chen & Lee 2024, "InstructionCP: A fast approach to transfer
Large Language Models into target language", arXiv:2405.20175. An *instruct* model continues
pre-training on target-language text wrapped as the assistant reply behind an empty user turn of
its own chat template (Sec. 3), plain causal-LM loss, all parameters; the baseline "orgCP" is the
same data without the template. Data of low perplexity under the model (<= 15) is what made it
work (Sec. 4).

Stages (`langshift/recipes/stages.py`: fingerprinted, resumable), each writing one folder:

  scores/   (when a perplexity bound is set) the perplexity of every record of every data source
            under the starting model (`langshift.score`: sharded over all processes, exactly
            once across kills); selection then keeps the records within the bounds;
  cpt/      continual pre-training through the engine (`train_and_evaluate`) from the starting
            model, on config.data with each source's template checked against `inscp.mode`;
            `config.evals` (response-language rate, held-out perplexity, the retention suite)
            run before the first step and at the end, so both sides are in its summary;
            `cpt/hf` is the adapted chat model;
  evaluate/ (when configured) retention, before and after: TMMLU+ from local files in its
            published layout (`inscp.tmmluplus.data_dir`), and pairwise judging of the adapted
            model against the starting one on a prompt file (`inscp.judge.prompts`), both
            orders, per prompt language, with a pluggable judge (a local model or an
            OpenAI-compatible server): a preference score where 50 is parity, not comparable
            with MT-Bench's 1-10 grades; unparsed verdicts are counted, not scored.

The starting model is `inscp.instruct` (a Hugging Face directory), or the export of a finished
LEP workdir (`inscp.lep_workdir`: its `lep_instruct/`, the instruct model with a new tokenizer and
propagated embeddings, Tikhomirov & Chernyshev 2024, arXiv:2412.21140), so a new tokenizer and
InsCP combine.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import ml_collections

from langshift import config_lib
from langshift.data import config as data_config_lib
from langshift.evaluation.judge import JUDGE_MAX_NEW_TOKENS
from langshift.recipes import roles
from langshift.recipes import stages as stages_lib
from langshift.recipes.stages import StageInterrupted

STAGE_DIRS = dict(score="scores", cpt="cpt", evaluate="evaluate")
MODES = {"inscp": "inscp", "orgcp": "none"}  # mode -> the template every data source must use


def inscp_config() -> ml_collections.ConfigDict:
  """The recipe's own config section, `config.inscp`."""
  placeholder = ml_collections.config_dict.placeholder
  return ml_collections.ConfigDict(
      dict(
          instruct="",  # local HF directory of the instruct model to adapt
          lep_workdir="",  # or: a finished LEP workdir; its lep_instruct/ export is the start
          mode="inscp",  # inscp (template="inscp" sources) | orgcp (template="none")
          # Perplexity selection under the starting model (the paper: <= 15). None and None: no
          # scoring stage, every record trains.
          max_perplexity=placeholder(float),
          min_perplexity=placeholder(float),
          score=dict(
              max_length=1024, batch_size=16, rows_per_call=4, shard_size=512, dtype="float32"
          ),
          # TMMLU+ in its published layout (<subject>_test.csv, <subject>_dev.csv): before/after.
          tmmluplus=dict(data_dir="", num_fewshot=0, max_examples=0, batch_size=8),
          judge=dict(
              prompts="",  # JSONL of {"prompt", "language"}: open questions (e.g. MT-Bench's)
              max_prompts=0,  # per language (0: all)
              answer_max_new_tokens=256,
              batch_size=8,
              # The judge explains before its verdict: a budget that cuts the explanation loses
              # the verdict (langshift/evaluation/judge.py: JUDGE_MAX_NEW_TOKENS).
              role=roles.role_config(backend="openai", max_new_tokens=JUDGE_MAX_NEW_TOKENS),
          ),
      )
  )


# Engine settings the experiment file states and the recipe checks (it never overrides them):
# InsCP trains every parameter (Sec. 3) and hands on a chat model; the recipe points the engine
# at the starting model itself.
REQUIRED_SETTINGS = {
    "train.trainable": "all",
    "checkpoint.export_hf_at_end": True,
    "init_from_hf": "",
    "tokenizer": "",
}
SCORE_SOURCE_FIELDS = (
    "path",
    "format",
    "text_field",
    "text_unit",
    "qa_split",
    "prompt_field",
    "response_field",
)


def inscp_paths(workdir: str) -> dict[str, str]:
  return {name: os.path.join(workdir, d) for name, d in STAGE_DIRS.items()}


def starting_model(inscp) -> str:
  if inscp.lep_workdir:
    return os.path.join(inscp.lep_workdir, "lep_instruct")
  return inscp.instruct


def _upstream_fingerprint(inscp) -> str:
  """The LEP export's stage fingerprint: a rerun on another export is a changed input."""
  if not inscp.lep_workdir:
    return ""
  with open(os.path.join(inscp.lep_workdir, "stages", "propagate.json")) as f:
    return json.load(f)["fingerprint"]


def stage_inputs(config, stage: str) -> dict[str, Any]:
  """The flat config values stage `stage` reads (its fingerprint in the stage marker)."""
  inscp = config.inscp
  common = {"start": starting_model(inscp), "start.fingerprint": _upstream_fingerprint(inscp)}
  if stage == "score":
    inputs = config_lib.select(config, ("inscp.score", "data.on_bad_record"))
    for src in data_config_lib.resolve_sources(config.data):
      inputs.update({f"data.sources.{src.name}.{f}": src[f] for f in SCORE_SOURCE_FIELDS})
    return {**common, **inputs}
  if stage == "cpt":
    keys = ("seed", "model", "data", "train", "optimizer", "evals", "inscp.mode")
    keys += ("inscp.max_perplexity", "inscp.min_perplexity")
    return {**common, **config_lib.select(config, keys)}
  keys = ("inscp.judge", "inscp.tmmluplus", "seed", "data.chat_template")
  return {**common, **config_lib.select(config, keys)}


def check_inscp_config(config) -> None:
  """One-line errors, before any stage runs, for bad or contradictory settings."""
  if "inscp" not in config:
    raise ValueError(
        "config.recipe='inscp' needs a config.inscp section: "
        "config.inscp = langshift.recipes.inscp.inscp_config()"
    )
  inscp = config.inscp
  config_lib.check_fields(dict(inscp), inscp_config(), "config.inscp")
  if bool(inscp.instruct) == bool(inscp.lep_workdir):
    raise ValueError(
        "config.inscp: give exactly one of instruct (a local HF directory) and lep_workdir "
        f"(a finished LEP workdir); got instruct={inscp.instruct!r}, "
        f"lep_workdir={inscp.lep_workdir!r}"
    )
  if inscp.lep_workdir and not os.path.exists(
      os.path.join(inscp.lep_workdir, "stages", "propagate.json")
  ):
    raise ValueError(
        f"config.inscp.lep_workdir={inscp.lep_workdir!r}: LEP has not finished there (no "
        "stages/propagate.json); run that workdir first"
    )
  model = starting_model(inscp)
  if not os.path.isdir(model):
    raise ValueError(f"config.inscp.instruct={model!r}: give a local Hugging Face model directory")
  if inscp.mode not in MODES:
    raise ValueError(f"config.inscp.mode={inscp.mode!r}; expected one of {tuple(MODES)}")
  flat = config_lib.flatten(config)
  for key, required in REQUIRED_SETTINGS.items():
    if flat[key] != required:
      raise ValueError(
          f"config.{key}={flat[key]!r} contradicts the InsCP recipe, which needs "
          f"{required!r} (see REQUIRED_SETTINGS in langshift/recipes/inscp.py)"
      )
  sources = data_config_lib.validate_data_config(config.data)
  for src in sources:
    if src.template != MODES[inscp.mode]:
      raise ValueError(
          f"config.data.sources.{src.name}.template={src.template!r} but "
          f"config.inscp.mode={inscp.mode!r} trains on template={MODES[inscp.mode]!r}"
      )
    if src.perplexity_scores or src.perplexity_field:
      raise ValueError(
          f"config.data.sources.{src.name}: the recipe scores the sources itself; set "
          "config.inscp.max_perplexity instead of perplexity_scores/perplexity_field"
      )
  if inscp.mode == "inscp":
    _check_empty_user_turn(model, config.data)
  _check_response_prompts(config.evals)
  if inscp.judge.prompts:
    from langshift.evaluation.response_eval import load_response_prompts  # pylint: disable=import-outside-toplevel

    try:
      load_response_prompts(inscp.judge.prompts)
    except (ValueError, FileNotFoundError) as e:
      raise ValueError(f"config.inscp.judge.prompts: {e}") from None
    roles.check_role(inscp.judge.role, "config.inscp.judge.role")
  if inscp.tmmluplus.data_dir and not os.path.isdir(inscp.tmmluplus.data_dir):
    raise ValueError(
        f"config.inscp.tmmluplus.data_dir={inscp.tmmluplus.data_dir!r}: no such folder"
    )


def _check_empty_user_turn(model_dir: str, data) -> None:
  """The wrapper needs a template that renders an empty user turn before the reply."""
  # pylint: disable=import-outside-toplevel
  from langshift.data.formatting import format_inscp
  from langshift.tokenization import chat_templates
  from langshift.tokenization.tokenizer import load_tokenizer

  tokenizer = load_tokenizer(model_dir)
  try:
    template = chat_templates.resolve_chat_template(
        data.chat_template, getattr(tokenizer, "chat_template", None)
    )
  except chat_templates.ChatTemplateError as e:
    raise ValueError(
        f"{model_dir}: InsCP wraps text as a reply behind an empty user turn of the chat "
        f"template: {e} (or use mode='orgcp')"
    ) from None
  try:
    format_inscp(
        "x",
        template,
        dict(getattr(tokenizer, "special_tokens_map", {})),
        newline_after_header=data.inscp.newline_after_header,
    )
  except (chat_templates.ChatTemplateError, ValueError, IndexError) as e:
    raise ValueError(
        f"{model_dir}: its chat template cannot render an empty user turn followed by a reply: "
        f"{e}"
    ) from None


def _check_response_prompts(evals) -> None:
  from langshift.evaluation.response_eval import load_response_prompts  # pylint: disable=import-outside-toplevel

  for name in evals.keys():
    entry = evals[name]
    if entry.get("kind") == "response" and entry.get("prompts"):
      try:
        load_response_prompts(entry.prompts)
      except (ValueError, FileNotFoundError) as e:
        raise ValueError(f"config.evals.{name}.prompts: {e}") from None


@stages_lib.stoppable
def run_inscp(
    config: ml_collections.ConfigDict, workdir: str, *, log: Callable[[str], None] = print
) -> dict[str, Any]:
  """Runs (or continues) every stage; returns {'status', 'stages': {name: summary}, 'export'}."""
  check_inscp_config(config)
  inscp, p = config.inscp, inscp_paths(workdir)
  runner = stages_lib.recipe_runner(config, workdir, log, STAGE_DIRS)
  stages: dict[str, Any] = {}
  selecting = inscp.max_perplexity is not None or inscp.min_perplexity is not None
  if selecting:
    stages["score"] = runner.run(
        "score",
        p["score"],
        lambda: score_sources(config, p["score"]),
        inputs=stage_inputs(config, "score"),
        clear_partial=False,  # the scoring job resumes its own shards
        collective=True,  # every process scores its share
    )
  try:
    stages["cpt"] = runner.run(
        "cpt",
        p["cpt"],
        lambda: continual_pretraining(config, p, selecting),
        inputs=stage_inputs(config, "cpt"),
        clear_partial=False,
        collective=True,
    )
  except StageInterrupted as e:
    runner.log("langshift: InsCP stopped during CPT; rerun the same command to continue")
    stages["cpt"] = e.summary
    return {"status": "preempted", "stages": stages, "export": None}
  export = os.path.join(p["cpt"], "hf")
  if inscp.judge.prompts or inscp.tmmluplus.data_dir:
    stages["evaluate"] = runner.run(
        "evaluate",
        p["evaluate"],
        lambda: evaluate_retention(config, export, p["evaluate"]),
        inputs=stage_inputs(config, "evaluate"),
    )
  runner.log(f"langshift: InsCP done; the adapted chat model: {export}")
  return {"status": "done", "stages": stages, "export": export}


def score_sources(config, out_dir: str) -> dict[str, Any]:
  """Stage 1: every source's records scored under the starting model (`langshift.score`)."""
  # pylint: disable=import-outside-toplevel
  import jax
  from jax.experimental import multihost_utils

  from langshift import score

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


def continual_pretraining(config, p: dict[str, str], selecting: bool) -> dict[str, Any]:
  """Stage 2: the engine's run from the starting model on the (selected) sources."""
  from langshift.train.trainer import train_and_evaluate  # pylint: disable=import-outside-toplevel

  inscp = config.inscp
  cpt = config.copy_and_resolve_references()
  with cpt.unlocked():
    del cpt["inscp"]
    cpt.recipe = "cpt"
    cpt.init_from_hf = starting_model(inscp)
    if selecting:
      for name in cpt.data.sources.keys():
        cpt.data.sources[name].update(
            perplexity_scores=os.path.join(p["score"], name, "scores.npy"),
            max_perplexity=inscp.max_perplexity,
            min_perplexity=inscp.min_perplexity,
        )
  summary = train_and_evaluate(cpt, p["cpt"])
  if summary.get("stop_reason") == "preempted":
    raise StageInterrupted("cpt", summary)
  if selecting:
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


def evaluate_retention(config, export: str, out_dir: str) -> dict[str, Any]:
  """Stage 3: TMMLU+ before/after (`before/tmmluplus/...`, `after/tmmluplus/...`) and the
  pairwise judge (`judge/<lang>/score`)."""
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
  from langshift.evaluation.benchmarks.tmmluplus import build_tmmluplus_suite
  from langshift.evaluation.harness import run_eval_suite

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
  """The adapted model (A) against the starting model (B), judged in both orders per pair
  (`langshift.evaluation.judge`), per prompt language: `judge/<lang>/score` is 100 x the mean
  pair score over the judged pairs (50: parity); `judge/<lang>/unparsed_verdicts` and
  `judge/<lang>/judged_pairs` count what could not be scored and what was."""
  # pylint: disable=import-outside-toplevel
  from langshift.evaluation.judge import judge_pairs, llm_judge
  from langshift.evaluation.response_eval import load_response_prompts
  from langshift.generation.interface import GenerationOptions

  judge_cfg = config.inscp.judge
  prompts = load_response_prompts(judge_cfg.prompts, judge_cfg.max_prompts)
  options = GenerationOptions(max_new_tokens=judge_cfg.answer_max_new_tokens)
  conversations = [[{"role": "user", "content": q.prompt}] for q in prompts]
  answers = {
      tag: _generator(
          model, judge_cfg.batch_size, config.mesh.num_devices, roles.run_chat_template(config)
      ).chat(conversations, options)
      for tag, model in models.items()
  }
  judge = llm_judge(
      roles.make_generator(judge_cfg.role),
      roles.generation_options(judge_cfg.role, seed=config.seed),
  )
  metrics: dict[str, Any] = {"judge/prompts": len(prompts)}
  for lang in sorted({q.language for q in prompts}):
    mine = [i for i, q in enumerate(prompts) if q.language == lang]
    result = judge_pairs(
        judge,
        [prompts[i].prompt for i in mine],
        [answers["after"][i] for i in mine],
        [answers["before"][i] for i in mine],
    )
    metrics.update(result.metrics(f"judge/{lang}"))
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "answers.jsonl"), "w", encoding="utf-8") as f:
    for i, q in enumerate(prompts):
      row = dict(prompt=q.prompt, language=q.language, after=answers["after"][i])
      f.write(json.dumps({**row, "before": answers["before"][i]}, ensure_ascii=False) + "\n")
  return metrics
