"""The pinch recipe's config section, `config.pinch`, and its checks."""

from __future__ import annotations

import json
import os
from typing import Any

import ml_collections

from langshift import config_lib
from langshift.data import parallel_sets
from langshift.evaluation.judge import JUDGE_MAX_NEW_TOKENS
from langshift.recipes import required_inputs as required_inputs_lib
from langshift.recipes import roles
from langshift.recipes.pinch import mixture

SPLITS = ("pinch", "uniform", "monolingual")
ASSIGNMENTS = ("disjoint", "parallel")
# The paper's twelve languages (Sec. 2.1) less English, and the language-count study's six
# (Sec. 3.4).
PAPER_LANGUAGES = ("ar", "zh", "cs", "et", "fi", "he", "hi", "it", "ru", "es", "sw")
STUDY_LANGUAGES = ("en", "ar", "fi", "it", "ru", "sw")
# Engine settings the recipe needs and the experiment file must state (checked, not overridden).
REQUIRED_SETTINGS = {"checkpoint.export_hf_at_end": True}


def pinch_config() -> ml_collections.ConfigDict:
  """The recipe's own config section, `config.pinch`. How long the student trains is the
  experiment's `train` section: `train.epochs > 0` sets `train.steps` from the mixture's packed
  rows (so a mixture of longer, non-English examples gets the steps it needs)."""
  return ml_collections.ConfigDict(
      dict(
          # A parallel set in the layout of langshift/data/parallel_sets.py:
          # <root>/<split>/<lang>.jsonl with the same ids in every language, and manifest.json.
          parallel_set="",
          train_split="train",
          eval_split="heldout",
          # pinch: P% of the budget spread over the languages, the rest `english` (Sec. 3.2);
          # uniform: the budget split evenly over the first `num_languages` of
          # `study_languages` (Sec. 3.4); monolingual: all of it in `monolingual` (the judge's
          # reference model for that language).
          split="pinch",
          budget=4640,  # examples in the mixture (LIMA 1,000 + OpenAssistant 3,640)
          percent=1.0,  # P
          # Over which languages the P% is spread. all (the paper, Sec. 3.2): evenly over
          # `english` and `languages` alike, so the non-English ones get
          # floor(budget x P/100 x L/(L+1)) for L languages (P = 1 of 4,640 over 12: 42, the
          # paper's "about 40"; P = 100 leaves English its twelfth, 387); non_english: all of it
          # over `languages` (round(P% of budget): 46 at P = 1, no English at P = 100).
          share_over="all",
          # >= 0: the number of non-English examples, fixed directly (e.g. 40, the paper's round
          # figure); -1: from P and `share_over`.
          multilingual_examples=-1,
          english="en",
          languages=PAPER_LANGUAGES,
          study_languages=STUDY_LANGUAGES,
          num_languages=1,
          monolingual="",
          # disjoint: every example id once (budget distinct instructions); parallel: the
          # non-English languages share translations of the same ids.
          assignment="disjoint",
          # Languages of the held-out prompts (the prompt file the evaluations read); () = every
          # language of the set. Each must be one the offline LID can label.
          eval_languages=(),
          max_eval_examples=0,  # per language in the prompt file (0: all)
          evaluate=dict(
              responses=False,  # answer the held-out prompts with sft/hf (evaluate/responses.jsonl)
              max_examples=0,  # per language (0: every prompt of the prompt file)
              max_new_tokens=256,
              batch_size=8,
              # The workdir of the model tuned monolingually on each language, with "{lang}"
              # (e.g. a sweep's "<root>/pinch.split=monolingual,pinch.monolingual={lang}"); its
              # evaluate/responses.jsonl is what the judge compares with. "": no judge.
              monolingual_workdir="",
              # The judge explains before its verdict: a budget that cuts the explanation loses
              # the verdict (langshift/evaluation/judge.py: JUDGE_MAX_NEW_TOKENS).
              judge=roles.role_config(backend="openai", max_new_tokens=JUDGE_MAX_NEW_TOKENS),
          ),
      )
  )


# What the mixture stage reads: the whole section but its evaluation.
MIXTURE_FIELDS = tuple(k for k in pinch_config() if k != "evaluate")


def tuned_languages(pinch) -> list[str]:
  """The languages the section's mixture draws from."""
  if pinch.split == "pinch":
    return [pinch.english, *pinch.languages]
  if pinch.split == "uniform":
    return list(pinch.study_languages[: pinch.num_languages])
  return [pinch.monolingual]


def tuned_counts(pinch, num_source_examples: int, seed: int) -> mixture.Mixture:
  """The mixture of `(language, example index)` the pinch section describes."""
  if pinch.split == "pinch":
    return mixture.pinch_mixture(
        pinch.budget,
        pinch.percent,
        list(pinch.languages),
        english=pinch.english,
        assignment=pinch.assignment,
        seed=seed,
        num_source_examples=num_source_examples,
        multilingual=None if pinch.multilingual_examples < 0 else pinch.multilingual_examples,
        share_over=pinch.share_over,
    )
  return mixture.uniform_mixture(
      pinch.budget,
      tuned_languages(pinch),
      assignment=pinch.assignment,
      seed=seed,
      num_source_examples=num_source_examples,
  )


def read_manifest(root: str) -> dict[str, Any]:
  path = os.path.join(root, "manifest.json")
  if not os.path.exists(path):
    raise ValueError(
        f"config.pinch.parallel_set={root!r}: no {path} (prepare the set: "
        "python -m langshift.data.handbook_parallel, or parallel_sets.write_parallel_set)"
    )
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def check_config(config) -> None:
  """The recipe's own one-line errors, before any stage runs (the runner has checked that the
  section exists with known fields only, and the required engine settings)."""
  pinch, where = config.pinch, "config.pinch"
  config_lib.check_fields(dict(pinch.evaluate), pinch_config().evaluate, f"{where}.evaluate")
  if pinch.split not in SPLITS:
    raise ValueError(f"{where}.split={pinch.split!r}; expected one of {SPLITS}")
  if pinch.assignment not in ASSIGNMENTS:
    raise ValueError(f"{where}.assignment={pinch.assignment!r}; expected one of {ASSIGNMENTS}")
  if pinch.share_over not in mixture.SHARE_OVER:
    raise ValueError(
        f"{where}.share_over={pinch.share_over!r}; expected one of {mixture.SHARE_OVER}"
    )
  if not 0 <= pinch.percent <= 100:
    raise ValueError(f"{where}.percent={pinch.percent}; expected a percentage in [0, 100]")
  if not isinstance(pinch.budget, int) or pinch.budget < 1:
    raise ValueError(f"{where}.budget={pinch.budget}; expected a positive number of examples")
  if not -1 <= pinch.multilingual_examples <= pinch.budget:
    raise ValueError(
        f"{where}.multilingual_examples={pinch.multilingual_examples}; expected -1 (P% of the "
        f"budget) or a count in [0, budget={pinch.budget}]"
    )
  if pinch.split == "uniform" and not 1 <= pinch.num_languages <= len(pinch.study_languages):
    raise ValueError(
        f"{where}.num_languages={pinch.num_languages}; expected 1..{len(pinch.study_languages)} "
        f"(study_languages={tuple(pinch.study_languages)})"
    )
  if pinch.split == "monolingual" and not pinch.monolingual:
    raise ValueError(f"{where}.monolingual is empty: give the language of split=monolingual")
  if config.train.epochs < 0:
    raise ValueError(f"config.train.epochs={config.train.epochs}; expected >= 0")
  if not pinch.parallel_set:
    raise ValueError(f"{where}.parallel_set is empty: give the parallel set's root")
  manifest = read_manifest(pinch.parallel_set)
  have = list(manifest.get("languages", ()))
  for lang in tuned_languages(pinch) + list(pinch.eval_languages):
    if lang not in have:
      raise ValueError(
          f"{where}: language {lang!r} is not in the parallel set {pinch.parallel_set} "
          f"(it holds {have})"
      )
  for split in (pinch.train_split, pinch.eval_split):
    if split not in manifest.get("splits", {}):
      raise ValueError(f"{where}: the parallel set {pinch.parallel_set} has no split {split!r}")
  # Every language of each split holds the same ids (an error names the language and an id).
  sets = {
      s: parallel_sets.read_parallel_set(pinch.parallel_set, s)
      for s in (pinch.train_split, pinch.eval_split)
  }
  n = len(next(iter(sets[pinch.train_split].values())))
  train_dir = os.path.join(pinch.parallel_set, pinch.train_split)
  if pinch.budget > n:
    raise ValueError(
        f"{where}.budget={pinch.budget} is larger than the parallel set {train_dir} "
        f"({n} examples per language)"
    )
  from langshift.evaluation.response_eval import check_language  # pylint: disable=import-outside-toplevel

  for lang in pinch.eval_languages or have:
    check_language(lang, f"{where}.eval_languages ({pinch.parallel_set})")
  if not config.init_from_hf or not os.path.isdir(config.init_from_hf):
    raise ValueError(
        f"config.init_from_hf={config.init_from_hf!r}: give the student's local "
        "Hugging Face directory"
    )
  if len(config.data.sources):
    raise ValueError(
        "config.data.sources must be empty: the recipe tunes the student on its mixture stage "
        "(set it with config.pinch)"
    )
  e = pinch.evaluate
  if e.monolingual_workdir:
    if not e.responses:
      raise ValueError(f"{where}.evaluate.monolingual_workdir needs evaluate.responses=True")
    if "{lang}" not in e.monolingual_workdir:
      raise ValueError(
          f"{where}.evaluate.monolingual_workdir={e.monolingual_workdir!r} has no '{{lang}}'"
      )
    roles.check_role(e.judge, f"{where}.evaluate.judge")


def required_inputs(config) -> list[str]:
  """The inputs a user must give this recipe that the config leaves empty (config keys);
  `langshift/recipes/required_inputs.py` adds the engine's data and evaluations."""
  p, where = config.pinch, "pinch"
  missing = [] if config.init_from_hf else ["init_from_hf"]
  if not p.parallel_set:
    missing.append(f"{where}.parallel_set")
  if p.evaluate.monolingual_workdir:
    missing += required_inputs_lib.role_inputs(p.evaluate.judge, f"{where}.evaluate.judge")
  return missing
