"""A pinch of multilinguality end to end: the `pinch` recipe's stages.

Shaham et al. 2024, "Multilingual Instruction Tuning With Just a Pinch of Multilinguality"
(arXiv:2401.01854): instruction-tune on a parallel set at a fixed budget in which a share P of
the examples is spread evenly over all twelve languages, English included, the rest English
(Sec. 3.2), or in which the budget is split evenly over 1 to 6 languages (Sec. 3.4), and judge
every language against a model tuned monolingually on it (Sec. 2.3: the IF score, 50 = parity;
a pairwise preference, not comparable with MT-Bench's 1-10 grades).

Three resumable stages (`langshift/recipes/recipe.py`), each writing one folder of the workdir:

  mixture/   the fixed-budget mixture drawn from the parallel set's train split (train.jsonl:
             one chat record per example, with its language and id; `mixture.py`) and the
             held-out split as a prompt file (prompts.jsonl: prompt, language, reference) the
             evaluations read
  sft/       SFT of the student (`init_from_hf`) on the mixture, loss on assistant tokens only:
             the recipe's main training run (`train.epochs > 0` sets the steps from the
             mixture's packed rows); `config.evals` run inside it (a `response_eval` with an
             empty `prompts` reads mixture/prompts.jsonl: response-language match and reference
             NLL per language); sft/hf is the tuned model
  evaluate/  (when `pinch.evaluate.responses`) the tuned model's answers to the held-out prompts
             (responses.jsonl) and, given the monolingually tuned models' workdirs, the IF score
             per language from the two-order pairwise judge (`evaluation.py`)

Settings are the `pinch` section (`config.py`); the student's training is the engine config
around it (`init_from_hf`, `train`, `optimizer`, `evals`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from langshift.data import config as data_config_lib
from langshift.data import parallel_sets
from langshift.data.pipeline import derived_seed
from langshift.jsonl import write_jsonl
from langshift.recipes import roles, training
from langshift.recipes.pinch import config as pinch_config_lib
from langshift.recipes.pinch import evaluation, mixture
from langshift.recipes.recipe import Recipe, Stage, StageContext


def mixture_records(pinch, by_language: Mapping[str, Sequence[dict]], seed: int) -> list[dict]:
  """The mixture as chat records ({"id", "lang", "messages"}), in the mixture's seeded order."""
  n = len(next(iter(by_language.values())))
  return [
      {**by_language[lang][i], "lang": lang}
      for lang, i in pinch_config_lib.tuned_counts(pinch, n, derived_seed(seed, "pinch"))
  ]


def prompt_records(by_language: Mapping[str, Sequence[dict]], max_per_language: int = 0):
  """The held-out split in response_eval's prompt-file layout (prompt, language, reference)."""
  for lang, examples in by_language.items():
    for example in examples[: max_per_language or None]:
      user, assistant = example["messages"][0], example["messages"][-1]
      yield {
          "id": example["id"],
          "prompt": user["content"],
          "language": lang,
          "reference": assistant["content"],
      }


def build_mixture(ctx: StageContext) -> dict[str, Any]:
  """Stage 1: the mixture (train.jsonl) and the held-out prompt file (prompts.jsonl)."""
  config, out_dir = ctx.config, ctx.paths["mixture"]
  pinch = config.pinch
  tuned = pinch_config_lib.tuned_languages(pinch)
  train = parallel_sets.read_parallel_set(pinch.parallel_set, pinch.train_split)
  records = mixture_records(pinch, {lang: train[lang] for lang in tuned}, config.seed)
  write_jsonl(os.path.join(out_dir, "train.jsonl"), records)
  heldout = parallel_sets.read_parallel_set(pinch.parallel_set, pinch.eval_split)
  evaluated = {lang: heldout[lang] for lang in (pinch.eval_languages or heldout)}
  prompts = write_jsonl(
      os.path.join(out_dir, "prompts.jsonl"), prompt_records(evaluated, pinch.max_eval_examples)
  )
  counts = mixture.language_counts([(r["lang"], r["id"]) for r in records])
  english = counts.get(pinch.english, 0) if pinch.split == "pinch" else 0
  return dict(
      examples=len(records),
      distinct_instructions=len({r["id"] for r in records}),
      multilingual_examples=len(records) - english if pinch.split == "pinch" else len(records),
      prompts=prompts,
      **{f"examples/{lang}": counts.get(lang, 0) for lang in tuned},
  )


def sft_config(ctx: StageContext):
  """The engine config of the SFT stage: the mixture as a chat source (loss on assistant tokens
  only), response evaluations with no prompt file of their own pointed at the held-out one."""
  config, mixture_dir = ctx.config, ctx.paths["mixture"]
  data = config.copy_and_resolve_references().data
  evals = config.copy_and_resolve_references().evals
  with data.unlocked():
    data.sources.mixture = data_config_lib.source_config(
        path=os.path.join(mixture_dir, "train.jsonl"),
        format="jsonl",
        template="chat",
        loss="assistant",
    )
  for entry in evals.values():
    if entry.get("kind") == "response" and not entry.prompts:
      entry.prompts = os.path.join(mixture_dir, "prompts.jsonl")
  return training.training_config(config, data=data, evals=evals)


def fine_tune(ctx: StageContext) -> dict[str, Any]:
  """Stage 2: SFT of the student on the mixture (the main training run)."""
  return training.train_stage("sft", sft_config(ctx), ctx.paths["sft"])


def evaluate_tuned(ctx: StageContext) -> dict[str, Any]:
  """Stage 3: the tuned model answers the held-out prompts; with monolingual references, the
  judge scores each language against the model tuned on that language only."""
  # pylint: disable=import-outside-toplevel
  from langshift.evaluation import response_eval
  from langshift.generation.interface import GenerationOptions

  config, paths = ctx.config, ctx.paths
  e = config.pinch.evaluate
  prompts = response_eval.load_response_prompts(
      os.path.join(paths["mixture"], "prompts.jsonl"), e.max_examples
  )
  role = roles.student_role(
      config,
      os.path.join(paths["sft"], "hf"),
      batch_size=e.batch_size,
      dtype=config.model.dtype,
  )
  items: list[dict] = []
  metrics = response_eval.evaluate_responses(
      prompts,
      roles.make_generator(role, rules=config.logical_rules, num_devices=config.mesh.num_devices),
      options=GenerationOptions(max_new_tokens=e.max_new_tokens),
      prefix="responses",
      records=items,
  )
  write_jsonl(os.path.join(paths["evaluate"], "responses.jsonl"), items)
  if e.monolingual_workdir:
    metrics.update(evaluation.judge_against_monolingual(config, ctx.workdir, items))
  with open(os.path.join(paths["evaluate"], "metrics.json"), "w") as f:
    json.dump(metrics, f, indent=1, sort_keys=True)
  return metrics


RECIPE = Recipe(
    name="pinch",
    title="pinch",
    section="pinch",
    section_config=pinch_config_lib.pinch_config,
    check=pinch_config_lib.check_config,
    required_settings=pinch_config_lib.REQUIRED_SETTINGS,
    required_inputs=pinch_config_lib.required_inputs,
    stages=(
        Stage(
            "mixture",
            "mixture",
            build_mixture,
            reads=("seed", *(f"pinch.{k}" for k in pinch_config_lib.MIXTURE_FIELDS)),
        ),
        Stage("sft", "sft", fine_tune, trains=""),
        Stage(
            "evaluate",
            "evaluate",
            evaluate_tuned,
            # The student answers in the run's template and dtype; the judge samples with a
            # seed derived from `seed` (`judging.make_judge`).
            reads=("pinch.evaluate", "data.chat_template", "model.dtype", "seed"),
            when=lambda config: config.pinch.evaluate.responses,
        ),
    ),
    export=lambda ctx: os.path.join(ctx.paths["sft"], "hf"),
    export_name="tuned model",
)
