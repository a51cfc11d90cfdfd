"""The non-instructional recipe's config section, `config.noninstruct`, and its checks."""

from __future__ import annotations

import os

import ml_collections

from langshift.data import config as data_config_lib
from langshift.evaluation.judge import JUDGE_MAX_NEW_TOKENS
from langshift.recipes import judged_benchmarks, roles
from langshift.recipes import required_inputs as required_inputs_lib
from langshift.recipes.non_instructional import splitting

MODES = ("continuation", "response_tuning")
# Engine settings the recipe needs and the experiment file must state (checked, not overridden).
REQUIRED_SETTINGS = {"checkpoint.export_hf_at_end": True}


def noninstruct_config() -> ml_collections.ConfigDict:
  """The recipe's own config section, `config.noninstruct`."""
  return ml_collections.ConfigDict(
      dict(
          mode="continuation",  # continuation | response_tuning (Hewitt et al. 2024)
          # Documents (any `data` source: JSONL, Parquet, ...; OpenWebText's layout is JSONL or
          # Parquet with a "text" field). response_tuning reads `response_field` instead.
          corpus=data_config_lib.source_config(path="", format="jsonl"),
          id_field="id",
          response_field="response",  # response_tuning: the record field holding the response
          max_documents=0,  # read at most this many documents (0: all)
          # The split unit is open in the paper: student tokens by default, or words, or chars.
          split=dict(unit="token", min_units=32, max_units=0),  # max_units > 0: cut longer docs
          # The teacher's request; "{text}" is the first half.
          continue_prompt=splitting.CONTINUE_PROMPT,
          # Held-out documents (same schema as `corpus`; "" = none), split like the corpus into
          # prompts with their real second half as reference: the SFT then evaluates before and
          # after (`response_eval`): response-language rate and reference NLL per token.
          heldout=data_config_lib.source_config(path="", format="jsonl"),
          heldout_language="en",
          heldout_prompts=16,
          heldout_max_new_tokens=64,
          teacher=roles.role_config(backend="openai", max_new_tokens=1024, temperature=0.0),
          evaluate=dict(
              # Prompts for the pairwise judge (the response_eval JSONL layout; "" = no judging):
              # the tuned student's answers against the untuned student's, both orders.
              judge_prompts="",
              max_judge_prompts=0,
              # The judge explains before its verdict: a budget that cuts the explanation loses
              # the verdict (langshift/evaluation/judge.py: JUDGE_MAX_NEW_TOKENS).
              judge=roles.role_config(backend="openai", max_new_tokens=JUDGE_MAX_NEW_TOKENS),
              answer_max_new_tokens=256,
              # The paper's judged benchmarks (Xie et al. 2024): MT-Bench single-answer
              # grading and Arena-Hard against its fixed baseline's answers, of the fine-tuned
              # student, from the published files (`judged_benchmarks.py`; questions "": not run).
              mt_bench=judged_benchmarks.mt_bench_config(),
              arena_hard=judged_benchmarks.arena_hard_config(),
          ),
      )
  )


def check_config(config) -> None:
  """The recipe's own one-line errors, before any stage runs (the runner has checked that the
  section exists with known fields only, and the required engine settings)."""
  n, where = config.noninstruct, "config.noninstruct"
  if n.mode not in MODES:
    raise ValueError(f"{where}.mode={n.mode!r}; expected one of {MODES}")
  data_config_lib.resolve_sources(ml_collections.ConfigDict({"sources": {"corpus": n.corpus}}))
  if n.split.unit not in splitting.SPLIT_UNITS:
    raise ValueError(
        f"{where}.split.unit={n.split.unit!r}; expected one of {splitting.SPLIT_UNITS}"
    )
  if n.split.min_units < 2:
    raise ValueError(f"{where}.split.min_units={n.split.min_units}; expected >= 2")
  if n.mode == "continuation":
    roles.check_role(n.teacher, f"{where}.teacher")
    if "{text}" not in n.continue_prompt:
      raise ValueError(f"{where}.continue_prompt has no {{text}} for the first half")
  if not config.init_from_hf or not os.path.isdir(config.init_from_hf):
    raise ValueError(
        f"config.init_from_hf={config.init_from_hf!r}: give the student's local Hugging Face "
        "directory"
    )
  if len(config.data.sources):
    raise ValueError(
        "config.data.sources must be empty: the recipe trains the student on its own pairs "
        "(noninstruct.corpus is the input)"
    )
  if n.evaluate.judge_prompts:
    roles.check_role(n.evaluate.judge, f"{where}.evaluate.judge")
  judged_benchmarks.check(n.evaluate, f"{where}.evaluate")


def required_inputs(config) -> list[str]:
  """The inputs a user must give this recipe that the config leaves empty (config keys);
  `langshift/recipes/required_inputs.py` adds the engine's data and evaluations."""
  n, where = config.noninstruct, "noninstruct"
  missing = [] if config.init_from_hf else ["init_from_hf"]
  if not n.corpus.path and n.corpus.get("format") != "tfds":
    missing.append(f"{where}.corpus.path")
  if n.mode == "continuation":
    missing += required_inputs_lib.role_inputs(n.teacher, f"{where}.teacher")
  if n.evaluate.judge_prompts:
    missing += required_inputs_lib.role_inputs(n.evaluate.judge, f"{where}.evaluate.judge")
  return missing + judged_benchmarks.missing_inputs(n.evaluate, f"{where}.evaluate")
