"""InsCP's config section, `config.inscp`, and its checks (Chen & Lee 2024, arXiv:2405.20175)."""

from __future__ import annotations

import os

import ml_collections

from langshift.data import config as data_config_lib
from langshift.evaluation.judge import JUDGE_MAX_NEW_TOKENS
from langshift.recipes import judged_benchmarks, roles
from langshift.recipes import required_inputs as required_inputs_lib

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
          # The paper's MT-Bench: single-answer grading of the starting and the adapted model,
          # from FastChat's files (`judged_benchmarks.py`; questions "": not run).
          mt_bench=judged_benchmarks.mt_bench_config(),
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


def starting_model(inscp) -> str:
  if inscp.lep_workdir:
    return os.path.join(inscp.lep_workdir, "lep_instruct")
  return inscp.instruct


def check_config(config) -> None:
  """The recipe's own one-line errors, before any stage runs (the runner has checked the
  section's fields and the required engine settings)."""
  inscp = config.inscp
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
  judged_benchmarks.check(inscp, "config.inscp")
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


def required_inputs(config) -> list[str]:
  """The inputs a user must give this recipe that the config leaves empty (config keys);
  `langshift/recipes/required_inputs.py` adds the engine's data and evaluations."""
  i = config.inscp
  missing = [] if i.instruct or i.lep_workdir else ["inscp.instruct"]
  if i.judge.prompts:
    missing += required_inputs_lib.role_inputs(i.judge.role, "inscp.judge.role")
  return missing + judged_benchmarks.missing_inputs(i, "inscp")
