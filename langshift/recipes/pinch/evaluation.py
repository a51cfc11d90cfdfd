"""The pinch's IF score: each language's answers judged against those of a model tuned on that
language only (Shaham et al. 2024, arXiv:2401.01854, Sec. 2.3; 50 = parity).

Unlike the other recipes' tuned-vs-untuned judging (`langshift/recipes/judging.py`), the
reference is another run's answers (`<monolingual_workdir>/evaluate/responses.jsonl`), one per
language, so the comparison and its per-language metrics live here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from langshift.jsonl import read_jsonl
from langshift.recipes import judging
from langshift.recipes.pinch import config as pinch_config_lib


def if_scores(
    judge,
    items: Sequence[Mapping[str, str]],
    references: Mapping[tuple[str, str], str],
) -> dict[str, float]:
  """Per language, the IF score of `items` ({"language", "prompt", "response"}) against the
  reference model's answers to the same prompts (`references[(language, prompt)]`): every pair
  judged in both orders, win 1 / tie 0.5 / loss 0, 100 x the mean (Sec. 2.3; 50 = parity). A
  pair with a verdict the judge did not give in the asked form (e.g. cut off by its token budget)
  in either order is left out of the score and its rates, and counted: a judge that cannot
  answer does not read as parity. Returns `if_score/<lang>`, `if_win/<lang>`, `if_tie/<lang>`,
  `if_loss/<lang>` (over the judged pairs), `if_pairs/<lang>` (all pairs), and
  `if_judged_pairs/<lang>`, `if_unparsed_verdicts/<lang>` (both orders together).
  """
  from langshift.evaluation.judge import judge_pairs  # pylint: disable=import-outside-toplevel

  out: dict[str, float] = {}
  for lang in sorted({it["language"] for it in items}):
    mine = [it for it in items if it["language"] == lang]
    missing = [it["prompt"] for it in mine if (lang, it["prompt"]) not in references]
    if missing:
      raise ValueError(
          f"judge: the reference model has no answer in {lang!r} to {missing[0][:60]!r} "
          f"({len(missing)} of {len(mine)} prompts)"
      )
    result = judge_pairs(
        judge,
        [it["prompt"] for it in mine],
        [it["response"] for it in mine],
        [references[(lang, it["prompt"])] for it in mine],
    )
    out[f"if_score/{lang}"] = result.score
    out[f"if_win/{lang}"] = result.rate(1.0)
    out[f"if_tie/{lang}"] = result.rate(0.5)
    out[f"if_loss/{lang}"] = result.rate(0.0)
    out[f"if_pairs/{lang}"] = float(len(mine))
    out[f"if_judged_pairs/{lang}"] = float(len(result.judged))
    out[f"if_unparsed_verdicts/{lang}"] = float(result.unparsed_verdicts)
  return out


def judge_against_monolingual(config, workdir: str, items: list[dict]) -> dict[str, float]:
  """The IF scores of this run's answers `items` against each language's monolingual model
  (`pinch.evaluate.monolingual_workdir`); a language whose reference is this run is parity by
  definition and not judged."""
  e = config.pinch.evaluate
  here = os.path.realpath(workdir)
  references: dict[tuple[str, str], str] = {}
  judged = []
  for lang in sorted({it["language"] for it in items}):
    reference_dir = e.monolingual_workdir.replace("{lang}", _set_language(config, lang))
    if os.path.realpath(reference_dir) == here:
      continue  # the reference model itself: parity by definition, nothing to judge
    path = os.path.join(reference_dir, "evaluate", "responses.jsonl")
    if not os.path.exists(path):
      raise ValueError(
          f"config.pinch.evaluate.monolingual_workdir: no {path}: run the model tuned on "
          f"{lang!r} only (pinch.split=monolingual) with evaluate.responses=True first"
      )
    for r in read_jsonl(path):
      references[(r["language"], r["prompt"])] = r["response"]
    judged += [it for it in items if it["language"] == lang]
  if not judged:
    return {}
  return if_scores(judging.make_judge(config, e.judge), judged, references)


def _set_language(config, label: str) -> str:
  """The parallel set's code of a response_eval label ('zh-Hans' -> 'zh')."""
  from langshift.text.language_id import normalize_language_tag  # pylint: disable=import-outside-toplevel

  pinch = config.pinch
  languages = (
      pinch.eval_languages or pinch_config_lib.read_manifest(pinch.parallel_set)["languages"]
  )
  for lang in languages:
    if normalize_language_tag(lang) == label:
      return lang
  return label
