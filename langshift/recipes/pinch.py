"""A pinch of multilinguality end to end: `run_pinch(config, workdir)`.

Shaham et al. 2024, "Multilingual Instruction Tuning With Just a Pinch of Multilinguality"
(arXiv:2401.01854): instruction-tune on a parallel set at a fixed budget in which a share P of
the examples is spread evenly over all twelve languages, English included, the rest English
(Sec. 3.2), or in which the budget is split evenly over 1 to 6 languages (Sec. 3.4), and judge
every language against a model tuned monolingually on it (Sec. 2.3: the IF score, 50 = parity;
a pairwise preference, not comparable with MT-Bench's 1-10 grades).

One config, three resumable stages (`stages.py`), each writing one folder of the workdir:

  mixture/   the fixed-budget mixture drawn from the parallel set's train split (train.jsonl:
             one chat record per example, with its language and id) and the held-out split as a
             prompt file (prompts.jsonl: prompt, language, reference) the evaluations read
  sft/       SFT of the student (`init_from_hf`) on the mixture, loss on assistant tokens only;
             `config.evals` run inside it (a `response_eval` with an empty `prompts` reads
             mixture/prompts.jsonl: response-language match and reference NLL per language);
             sft/hf is the tuned model
  evaluate/  (when `pinch.evaluate.responses`) the tuned model's answers to the held-out prompts
             (responses.jsonl) and, given the monolingually tuned models' workdirs, the IF score
             per language from the two-order pairwise judge (`langshift/evaluation/judge.py`)

Settings are the `pinch` section (`pinch_config()`); the student's training is the engine config
around it (`init_from_hf`, `train`, `optimizer`, `evals`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ml_collections

from langshift import config_lib
from langshift.data import chat_epochs, parallel_sets
from langshift.data import config as data_config_lib
from langshift.data import pinch as pinch_lib
from langshift.data.pipeline import derived_seed
from langshift.evaluation.judge import JUDGE_MAX_NEW_TOKENS
from langshift.recipes import roles
from langshift.recipes import stages as stages_lib
from langshift.recipes.stages import StageInterrupted

STAGE_DIRS = dict(mixture="mixture", sft="sft", evaluate="evaluate")
SPLITS = ("pinch", "uniform", "monolingual")
ASSIGNMENTS = ("disjoint", "parallel")
# The paper's twelve languages (Sec. 2.1) less English, and the language-count study's six
# (Sec. 3.4).
PAPER_LANGUAGES = ("ar", "zh", "cs", "et", "fi", "he", "hi", "it", "ru", "es", "sw")
STUDY_LANGUAGES = ("en", "ar", "fi", "it", "ru", "sw")
# Engine settings the recipe needs and the experiment file must state (checked, not overridden).
REQUIRED_SETTINGS = {"checkpoint.export_hf_at_end": True, "data.mixer": "weighted"}


def pinch_config() -> ml_collections.ConfigDict:
  """The recipe's own config section, `config.pinch`."""
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
          # Epochs over the mixture; > 0 sets train.steps from the mixture's packed rows (so a
          # mixture of longer, non-English examples gets the steps it needs); 0 keeps train.steps.
          epochs=0.0,
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


def paths(workdir: str) -> dict[str, str]:
  return {name: os.path.join(workdir, d) for name, d in STAGE_DIRS.items()}


def stage_inputs(config, stage: str) -> dict[str, Any]:
  """Every config value stage `stage` reads: its fingerprint in the stage marker."""
  mixture = [k for k in pinch_config() if k != "evaluate"]
  keys = {
      "mixture": ["seed", *(f"pinch.{k}" for k in mixture)],
      "sft": ["seed", "init_from_hf", "model", "data", "train", "optimizer", "evals"],
      "evaluate": ["pinch.evaluate", "data.chat_template"],
  }[stage]
  values = config_lib.select(config, keys)
  return {
      k: v
      for k, v in values.items()
      if k.rsplit(".", 1)[-1] not in ("batch_size", "max_concurrency", "timeout_s", "api_key_env")
  }


# --- Checks ---------------------------------------------------------------------------------


def tuned_counts(p, num_source_examples: int, seed: int) -> pinch_lib.Mixture:
  """The mixture of `(language, example index)` the pinch section describes."""
  if p.split == "pinch":
    return pinch_lib.pinch_mixture(
        p.budget,
        p.percent,
        list(p.languages),
        english=p.english,
        assignment=p.assignment,
        seed=seed,
        num_source_examples=num_source_examples,
        multilingual=None if p.multilingual_examples < 0 else p.multilingual_examples,
        share_over=p.share_over,
    )
  return pinch_lib.uniform_mixture(
      p.budget,
      tuned_languages(p),
      assignment=p.assignment,
      seed=seed,
      num_source_examples=num_source_examples,
  )


def tuned_languages(p) -> list[str]:
  if p.split == "pinch":
    return [p.english, *p.languages]
  if p.split == "uniform":
    return list(p.study_languages[: p.num_languages])
  return [p.monolingual]


def _manifest(root: str) -> dict[str, Any]:
  path = os.path.join(root, "manifest.json")
  if not os.path.exists(path):
    raise ValueError(
        f"config.pinch.parallel_set={root!r}: no {path} (prepare the set: "
        "python -m langshift.data.handbook_parallel, or parallel_sets.write_parallel_set)"
    )
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def check_pinch_config(config) -> dict[str, Any]:
  """One-line errors, before any stage runs; returns the set's manifest."""
  if "pinch" not in config:
    raise ValueError(
        "config.recipe='pinch' needs a config.pinch section: "
        "config.pinch = langshift.recipes.pinch.pinch_config()"
    )
  p, where = config.pinch, "config.pinch"
  config_lib.check_fields(dict(p), pinch_config(), where)
  config_lib.check_fields(dict(p.evaluate), pinch_config().evaluate, f"{where}.evaluate")
  if p.split not in SPLITS:
    raise ValueError(f"{where}.split={p.split!r}; expected one of {SPLITS}")
  if p.assignment not in ASSIGNMENTS:
    raise ValueError(f"{where}.assignment={p.assignment!r}; expected one of {ASSIGNMENTS}")
  if p.share_over not in pinch_lib.SHARE_OVER:
    raise ValueError(f"{where}.share_over={p.share_over!r}; expected one of {pinch_lib.SHARE_OVER}")
  if not 0 <= p.percent <= 100:
    raise ValueError(f"{where}.percent={p.percent}; expected a percentage in [0, 100]")
  if not isinstance(p.budget, int) or p.budget < 1:
    raise ValueError(f"{where}.budget={p.budget}; expected a positive number of examples")
  if not -1 <= p.multilingual_examples <= p.budget:
    raise ValueError(
        f"{where}.multilingual_examples={p.multilingual_examples}; expected -1 (P% of the "
        f"budget) or a count in [0, budget={p.budget}]"
    )
  if p.split == "uniform" and not 1 <= p.num_languages <= len(p.study_languages):
    raise ValueError(
        f"{where}.num_languages={p.num_languages}; expected 1..{len(p.study_languages)} "
        f"(study_languages={tuple(p.study_languages)})"
    )
  if p.split == "monolingual" and not p.monolingual:
    raise ValueError(f"{where}.monolingual is empty: give the language of split=monolingual")
  if p.epochs < 0:
    raise ValueError(f"{where}.epochs={p.epochs}; expected >= 0")
  if not p.parallel_set:
    raise ValueError(f"{where}.parallel_set is empty: give the parallel set's root")
  manifest = _manifest(p.parallel_set)
  have = list(manifest.get("languages", ()))
  for lang in tuned_languages(p) + list(p.eval_languages):
    if lang not in have:
      raise ValueError(
          f"{where}: language {lang!r} is not in the parallel set {p.parallel_set} "
          f"(it holds {have})"
      )
  for split in (p.train_split, p.eval_split):
    if split not in manifest.get("splits", {}):
      raise ValueError(f"{where}: the parallel set {p.parallel_set} has no split {split!r}")
  # Every language of each split holds the same ids (an error names the language and an id).
  sets = {
      s: parallel_sets.read_parallel_set(p.parallel_set, s) for s in (p.train_split, p.eval_split)
  }
  n = len(next(iter(sets[p.train_split].values())))
  train_dir = os.path.join(p.parallel_set, p.train_split)
  if p.budget > n:
    raise ValueError(
        f"{where}.budget={p.budget} is larger than the parallel set {train_dir} "
        f"({n} examples per language)"
    )
  from langshift.evaluation.response_eval import check_language  # pylint: disable=import-outside-toplevel

  for lang in p.eval_languages or have:
    check_language(lang, f"{where}.eval_languages ({p.parallel_set})")
  _check_engine(config)
  e = p.evaluate
  if e.monolingual_workdir:
    if not e.responses:
      raise ValueError(f"{where}.evaluate.monolingual_workdir needs evaluate.responses=True")
    if "{lang}" not in e.monolingual_workdir:
      raise ValueError(
          f"{where}.evaluate.monolingual_workdir={e.monolingual_workdir!r} has no '{{lang}}'"
      )
    roles.check_role(e.judge, f"{where}.evaluate.judge")
  return manifest


def _check_engine(config) -> None:
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
  flat = config_lib.flatten(config)
  for key, required in REQUIRED_SETTINGS.items():
    if flat[key] != required:
      raise ValueError(
          f"config.{key}={flat[key]!r} contradicts the pinch recipe, which needs {required!r}"
      )


# --- Stages ---------------------------------------------------------------------------------


@stages_lib.stoppable
def run_pinch(
    config: ml_collections.ConfigDict, workdir: str, *, log: Callable[[str], None] = print
) -> dict[str, Any]:
  """Runs (or continues) every stage; returns {'status', 'stages', 'export'}."""
  check_pinch_config(config)
  p = paths(workdir)
  runner = stages_lib.recipe_runner(config, workdir, log, STAGE_DIRS)
  stages: dict[str, Any] = {}

  def run(name, body, **kwargs):
    summary = runner.run(name, p[name], body, inputs=stage_inputs(config, name), **kwargs)
    stages[name] = summary
    runner.log(f"langshift: stage {name}: {stages_lib.format_counts(summary)}")
    return summary

  run("mixture", lambda: build_mixture(config, p["mixture"]))
  try:
    run("sft", lambda: tune(config, p), clear_partial=False, collective=True)
  except StageInterrupted as e:
    runner.log("langshift: stopped during sft; rerun the same command to continue")
    stages["sft"] = e.summary
    return {"status": "preempted", "stages": stages, "export": None}
  if config.pinch.evaluate.responses:
    run("evaluate", lambda: evaluate_tuned(config, workdir, p))
  export = os.path.join(p["sft"], "hf")
  runner.log(f"langshift: pinch done; tuned model: {export}")
  return {"status": "done", "stages": stages, "export": export}


def _write_jsonl(path: str, records) -> int:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  n = 0
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    for r in records:
      f.write(json.dumps(r, ensure_ascii=False) + "\n")
      n += 1
  os.replace(path + ".tmp", path)
  return n


def mixture_records(p, by_language: Mapping[str, Sequence[dict]], seed: int) -> list[dict]:
  """The mixture as chat records ({"id", "lang", "messages"}), in the mixture's seeded order."""
  n = len(next(iter(by_language.values())))
  return [
      {**by_language[lang][i], "lang": lang}
      for lang, i in tuned_counts(p, n, derived_seed(seed, "pinch"))
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


def build_mixture(config, out_dir: str) -> dict[str, Any]:
  """Stage 1: the mixture (train.jsonl) and the held-out prompt file (prompts.jsonl)."""
  p = config.pinch
  train = parallel_sets.read_parallel_set(p.parallel_set, p.train_split)
  tuned = {lang: train[lang] for lang in tuned_languages(p)}
  records = mixture_records(p, tuned, config.seed)
  _write_jsonl(os.path.join(out_dir, "train.jsonl"), records)
  heldout = parallel_sets.read_parallel_set(p.parallel_set, p.eval_split)
  evaluated = {lang: heldout[lang] for lang in (p.eval_languages or heldout)}
  prompts = _write_jsonl(
      os.path.join(out_dir, "prompts.jsonl"), prompt_records(evaluated, p.max_eval_examples)
  )
  counts = pinch_lib.language_counts([(r["lang"], r["id"]) for r in records])
  english = counts.get(p.english, 0) if p.split == "pinch" else 0
  return dict(
      examples=len(records),
      distinct_instructions=len({r["id"] for r in records}),
      multilingual_examples=len(records) - english if p.split == "pinch" else len(records),
      prompts=prompts,
      **{f"examples/{lang}": counts.get(lang, 0) for lang in tuned_languages(p)},
  )


def sft_config(config, p: dict[str, str]) -> ml_collections.ConfigDict:
  """The engine config of the SFT stage: the mixture as a chat source (loss on assistant tokens
  only), response evaluations pointed at the held-out prompt file."""
  sft = config.copy_and_resolve_references()
  with sft.unlocked():
    sft.recipe = "cpt"
    sft.data.sources.mixture = data_config_lib.source_config(
        path=os.path.join(p["mixture"], "train.jsonl"),
        format="jsonl",
        template="chat",
        loss="assistant",
    )
    for entry in sft.evals.values():
      if entry.get("kind") == "response" and not entry.prompts:
        entry.prompts = os.path.join(p["mixture"], "prompts.jsonl")
  return sft


def tune(config, p: dict[str, str]) -> dict[str, Any]:
  """Stage 2: SFT of the student on the mixture through the engine."""
  from langshift.train.trainer import train_and_evaluate  # pylint: disable=import-outside-toplevel

  sft = sft_config(config, p)
  extra: dict[str, Any] = {}
  if config.pinch.epochs > 0:
    steps, tokens = chat_epochs.epoch_steps(
        config, os.path.join(p["mixture"], "train.jsonl"), config.pinch.epochs
    )
    with sft.unlocked():
      sft.train.steps = steps
    extra = {"epoch_steps": steps, "mixture_tokens": tokens}
  summary = train_and_evaluate(sft, p["sft"])
  if summary.get("stop_reason") == "preempted":
    raise StageInterrupted("sft", summary)
  return {**summary, **extra}


# --- Evaluation: responses and the IF score ---------------------------------------------------


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


def make_judge(role):
  """The judge of `pinch.evaluate.judge` (a local checkpoint or an OpenAI-compatible server)."""
  from langshift.evaluation.judge import llm_judge  # pylint: disable=import-outside-toplevel

  return llm_judge(roles.make_generator(role), roles.generation_options(role, seed=0))


def _read_jsonl(path: str) -> list[dict]:
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def evaluate_tuned(config, workdir: str, p: dict[str, str]) -> dict[str, Any]:
  """Stage 3: the tuned model answers the held-out prompts; with monolingual references, the
  judge scores each language against the model tuned on that language only."""
  # pylint: disable=import-outside-toplevel
  from langshift.evaluation import response_eval
  from langshift.generation.interface import GenerationOptions

  e = config.pinch.evaluate
  prompts = response_eval.load_response_prompts(
      os.path.join(p["mixture"], "prompts.jsonl"), e.max_examples
  )
  role = roles.student_role(
      config,
      os.path.join(p["sft"], "hf"),
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
  _write_jsonl(os.path.join(p["evaluate"], "responses.jsonl"), items)
  if e.monolingual_workdir:
    metrics.update(_judge_against_monolingual(config, workdir, items))
  with open(os.path.join(p["evaluate"], "metrics.json"), "w") as f:
    json.dump(metrics, f, indent=1, sort_keys=True)
  return metrics


def _judge_against_monolingual(config, workdir: str, items: list[dict]) -> dict[str, float]:
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
    for r in _read_jsonl(path):
      references[(r["language"], r["prompt"])] = r["response"]
    judged += [it for it in items if it["language"] == lang]
  if not judged:
    return {}
  return if_scores(make_judge(e.judge), judged, references)


def _set_language(config, label: str) -> str:
  """The parallel set's code of a response_eval label ('zh-Hans' -> 'zh')."""
  from langshift.text.language_id import normalize_language_tag  # pylint: disable=import-outside-toplevel

  languages = config.pinch.eval_languages or _manifest(config.pinch.parallel_set)["languages"]
  for lang in languages:
    if normalize_language_tag(lang) == label:
      return lang
  return label
