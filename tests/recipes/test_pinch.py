"""A pinch of multilinguality: the mixtures the experiment file configures, the IF score against
hand-computed judge outcomes, one-line errors for bad input, a tiny run of every stage, epochs
counted by the training stage, and what invalidates a finished stage."""

import json
import os
import sys

import native_alignment_fixtures as fx
import pytest

from langshift import config_lib
from langshift.data import parallel_sets
from langshift.evaluation.judge import FIRST, SECOND
from langshift.recipes import judging
from langshift.recipes import pinch as pinch_lib
from langshift.recipes.pinch import config as pinch_config
from langshift.recipes.pinch import evaluation as pinch_evaluation
from langshift.recipes.pinch import mixture as pinch
from langshift.recipes.pinch import recipe as pinch_recipe
from langshift.recipes.recipe import StageContext, run_recipe
from langshift.recipes.run import run_experiment

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, REPO)
from experiments import pinch as experiment  # noqa: E402

TEXT = {
    "en": "The package manager installs software and keeps the system up to date.",
    "ar": "يقوم مدير الحزم بتثبيت البرامج ويحافظ على تحديث النظام.",
    "ru": "Менеджер пакетов устанавливает программы и поддерживает систему в актуальном виде.",
}


def write_set(root, languages=("en", "ar", "ru"), train=20, heldout=3, drop=None):
  """A parallel set of `train` / `heldout` ids per language; `drop=(lang, k)` removes one id."""
  splits = {}
  for split, n in (("train", train), ("heldout", heldout)):
    splits[split] = {
        lang: [
            {
                "id": f"{split}-{k:03d}",
                "lang": lang,
                "messages": parallel_sets.pair_messages(
                    f"{TEXT.get(lang, TEXT['en'])} ({k}) ?", f"{TEXT.get(lang, TEXT['en'])} {k}."
                ),
            }
            for k in range(n)
        ]
        for lang in languages
    }
  parallel_sets.write_parallel_set(str(root), splits, source="test")
  if drop:
    lang, k = drop
    path = os.path.join(root, "train", f"{lang}.jsonl")
    with open(path, encoding="utf-8") as f:
      lines = f.readlines()
    del lines[k]
    with open(path, "w", encoding="utf-8") as f:
      f.writelines(lines)
  return str(root)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
  root = tmp_path_factory.mktemp("pinch")
  return dict(
      parallel_set=write_set(root / "set"), model=fx.write_chat_model(root / "model"), root=root
  )


def _tiny(inputs, arg="tiny", **overrides):
  config = experiment.get_config(arg)
  config.init_from_hf = inputs["model"]
  config.pinch.parallel_set = inputs["parallel_set"]
  return config_lib.apply_overrides(config, overrides)


def _mixture(config, work):
  """The mixture stage alone (config.stop_after), through the recipe runner: its summary."""
  config = config_lib.apply_overrides(config, {"stop_after": "mixture"})
  result = run_recipe(pinch_lib.RECIPE, config, str(work), log=lambda _: None)
  assert result["status"] == "stopped"
  return result["stages"]["mixture"]


def _read(path):
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


# --- The mixtures as the experiment file configures them ---------------------------------------


def test_published_setting_spreads_p_over_all_12_languages_english_included():
  # Shaham et al. 2024, Sec. 3.2: P% of the budget evenly over the 12 languages, English one of
  # them; the rest English. The 11 others get floor(4,640 x 1% x 11/12) = floor(42.53) = 42
  # (the paper's "40"), 42 = 11 x 3 + 9: nine languages get 4, two get 3.
  default = experiment.get_config()
  p = default.pinch
  assert (p.budget, p.percent, p.english, len(p.languages)) == (4640, 1.0, "en", 11)
  assert p.share_over == "all"
  counts = pinch.language_counts(pinch_config.tuned_counts(p, 4640, seed=0))
  assert sum(counts.values()) == 4640 and set(counts) == {"en", *p.languages}
  assert counts["en"] == 4640 - 42
  assert sorted(counts[lang] for lang in p.languages) == [3] * 2 + [4] * 9
  # P = 100: English keeps its twelfth, 4,640 - floor(4,640 x 11/12) = 4,640 - 4,253 = 387.
  p100 = config_lib.apply_overrides(default, {"pinch.percent": 100.0}).pinch
  counts = pinch.language_counts(pinch_config.tuned_counts(p100, 4640, seed=0))
  assert counts["en"] == 387 and sorted(set(counts[lang] for lang in p.languages)) == [386, 387]
  # The split langshift used before (P% over the 11 non-English languages only) stays behind
  # pinch.share_over=non_english, with its counts: round(1% of 4,640) = 46, none English at 100.
  old = config_lib.apply_overrides(default, {"pinch.share_over": "non_english"}).pinch
  counts = pinch.language_counts(pinch_config.tuned_counts(old, 4640, seed=0))
  assert counts["en"] == 4640 - 46
  assert sorted(counts[lang] for lang in p.languages) == [4] * 9 + [5] * 2
  old100 = config_lib.apply_overrides(
      default, {"pinch.share_over": "non_english", "pinch.percent": 100.0}
  ).pinch
  counts = pinch.language_counts(pinch_config.tuned_counts(old100, 4640, seed=0))
  assert "en" not in counts and sum(counts.values()) == 4640
  fixed = experiment.get_config("count=40").pinch
  counts = pinch.language_counts(pinch_config.tuned_counts(fixed, 4640, seed=0))
  assert counts["en"] == 4600 and sum(counts.values()) == 4640
  study = experiment.get_config("study=languages").pinch
  assert (
      pinch_config.tuned_languages(study) == ["en", "ar", "fi", "it", "ru"][: study.num_languages]
  )
  counts = pinch.language_counts(pinch_config.tuned_counts(study, 4640, seed=0))
  assert counts == {lang: 1160 for lang in ("en", "ar", "fi", "it")}


def test_tiny_mixtures_disjoint_parallel_and_language_count(inputs, tmp_path):
  config = _tiny(inputs)
  summary = _mixture(config, tmp_path / "a")
  records = _read(tmp_path / "a" / "mixture" / "train.jsonl")
  # 50% of 12 over en, ar, ru: the non-English two get floor(12 x 50% x 2/3) = 4.
  assert summary["examples"] == 12 and summary["multilingual_examples"] == 4
  assert (summary["examples/ar"], summary["examples/ru"], summary["examples/en"]) == (2, 2, 8)
  assert len({r["id"] for r in records}) == 12  # disjoint: every instruction once
  ar = next(r for r in records if r["lang"] == "ar")
  assert ar["messages"][1]["content"].startswith(TEXT["ar"])  # the Arabic text of that id
  prompts = _read(tmp_path / "a" / "mixture" / "prompts.jsonl")
  assert [(p["language"], p["id"]) for p in prompts[:2]] == [
      ("en", "heldout-000"),
      ("en", "heldout-001"),
  ]
  assert len(prompts) == 6 and prompts[0]["reference"] == f"{TEXT['en']} 0."  # 2 per language

  parallel = _tiny(inputs, "tiny,assignment=parallel")
  _mixture(parallel, tmp_path / "b")
  records = _read(tmp_path / "b" / "mixture" / "train.jsonl")
  ids = {lang: {r["id"] for r in records if r["lang"] == lang} for lang in ("ar", "ru")}
  assert ids["ar"] == ids["ru"] and len(ids["ar"]) == 2  # translations of the same instructions

  fixed = _mixture(_tiny(inputs, "tiny,count=2"), tmp_path / "c")
  assert fixed["multilingual_examples"] == 2 and fixed["examples/en"] == 10

  for k, expected in ((1, {"en": 12}), (3, {"en": 4, "ar": 4, "ru": 4})):
    study = _tiny(inputs, "tiny,study=languages", **{"pinch.num_languages": k})
    summary = _mixture(study, tmp_path / f"k{k}")
    assert {k2[len("examples/") :]: v for k2, v in summary.items() if "/" in k2} == expected


def test_cpu_variant_on_the_offline_set_and_the_sweep_grid():
  sweep = experiment.sweep()
  assert [c["pinch.percent"] for c in sweep if "pinch.percent" in c] == [
      0.0,
      1.0,
      10.0,
      20.0,
      30.0,
      40.0,
      50.0,
      60.0,
      70.0,
      80.0,
      90.0,
      100.0,
  ]
  assert [c["pinch.num_languages"] for c in sweep if "pinch.num_languages" in c] == [
      1,
      2,
      3,
      4,
      5,
      6,
  ]
  config = experiment.get_config("cpu")
  if not os.path.exists(os.path.join(config.pinch.parallel_set, "manifest.json")):
    pytest.skip("the offline set is prepared by launch/setup_env.sh")
  with open(os.path.join(config.pinch.parallel_set, "manifest.json"), encoding="utf-8") as f:
    manifest = json.load(f)
  # 289 aligned pairs with every side in its language and no command (293 before commands were
  # dropped; an older set is rebuilt by launch/setup_env.sh).
  assert manifest["splits"] == {"train": 289, "heldout": 68}
  n = manifest["splits"]["train"]
  # 6 languages: the 5 non-English get floor(60 x P/100 x 5/6): 0 at P = 1 (half an example in
  # all), 5 at P = 10, one each.
  counts = pinch.language_counts(pinch_config.tuned_counts(config.pinch, n, seed=0))
  assert counts == {"en": 60}
  p10 = config_lib.apply_overrides(config, {"pinch.percent": 10.0}).pinch
  counts = pinch.language_counts(pinch_config.tuned_counts(p10, n, seed=0))
  assert counts == {"en": 55, "ar": 1, "es": 1, "it": 1, "ru": 1, "zh": 1}
  k4 = config_lib.apply_overrides(config, {"pinch.split": "uniform", "pinch.num_languages": 4})
  counts = pinch.language_counts(pinch_config.tuned_counts(k4.pinch, n, seed=0))
  assert counts == {"en": 15, "ar": 15, "it": 15, "ru": 15}  # es, zh stay held out
  # One study language is the P = 0 mixture itself (the same ids in the same order).
  p0 = config_lib.apply_overrides(config, {"pinch.percent": 0.0}).pinch
  k1 = config_lib.apply_overrides(config, {"pinch.split": "uniform", "pinch.num_languages": 1})
  assert pinch_config.tuned_counts(k1.pinch, n, 5) == pinch_config.tuned_counts(p0, n, 5)


# --- The IF score --------------------------------------------------------------------------


def test_if_score_from_hand_computed_two_order_outcomes():
  # Verdicts per (question, first shown, second shown); the model's answers are "m*", the
  # monolingual reference's "r*".
  verdicts = {
      ("q1", "m1", "r1"): FIRST,  # the model picked in both orders: win (1)
      ("q1", "r1", "m1"): SECOND,
      ("q2", "m2", "r2"): FIRST,  # picked first both times (position bias): tie (0.5)
      ("q2", "r2", "m2"): FIRST,
      ("q3", "m3", "r3"): SECOND,  # the reference picked in both: loss (0)
      ("q3", "r3", "m3"): FIRST,
      # Unparsable verdict (e.g. the judge cut off by its budget): not a tie, since that would
      # pull a judge that cannot answer towards parity; the pair is left out and counted.
      ("q4", "m4", "r4"): None,
      ("q4", "r4", "m4"): SECOND,
      ("q5", "m5", "r5"): FIRST,  # Russian: one win
      ("q5", "r5", "m5"): SECOND,
  }
  calls = []

  def judge(triples):
    calls.append(list(triples))
    return [verdicts[t] for t in triples]

  items = [
      {"language": lang, "prompt": f"q{k}", "response": f"m{k}"}
      for lang, k in (("ar", 1), ("ar", 2), ("ar", 3), ("ar", 4), ("ru", 5))
  ]
  references = {(it["language"], it["prompt"]): "r" + it["response"][1:] for it in items}
  scores = pinch_evaluation.if_scores(judge, items, references)
  assert scores["if_score/ar"] == pytest.approx(100 * (1 + 0.5 + 0) / 3)  # 50.0 over q1-q3
  assert (scores["if_win/ar"], scores["if_tie/ar"], scores["if_loss/ar"]) == (1 / 3, 1 / 3, 1 / 3)
  assert (scores["if_pairs/ar"], scores["if_judged_pairs/ar"]) == (4.0, 3.0)
  assert scores["if_unparsed_verdicts/ar"] == 1.0
  assert scores["if_score/ru"] == 100.0 and scores["if_pairs/ru"] == 1.0
  assert (scores["if_judged_pairs/ru"], scores["if_unparsed_verdicts/ru"]) == (1.0, 0.0)
  assert len(calls) == 2 and len(calls[0]) == 8  # one batched call per language, both orders
  with pytest.raises(ValueError, match="no answer in 'ru'"):
    pinch_evaluation.if_scores(judge, items, {k: v for k, v in references.items() if k[0] == "ar"})


# --- Bad input -----------------------------------------------------------------------------


def test_bad_input_is_a_one_line_error_naming_it(inputs, tmp_path):
  cases = [
      ({"pinch.percent": 150.0}, "config.pinch.percent=150.0"),
      ({"pinch.budget": 21}, "budget=21 is larger than the parallel set .*train \\(20 examples"),
      ({"pinch.multilingual_examples": 13}, "multilingual_examples=13"),
      ({"pinch.share_over": "others"}, "config.pinch.share_over='others'; expected one of"),
      ({"pinch.languages": ("ar", "sw")}, "language 'sw' is not in the parallel set"),
  ]
  for overrides, message in cases:
    with pytest.raises(ValueError, match=message) as e:
      pinch_lib.RECIPE.check_config(_tiny(inputs, **overrides))
    assert "\n" not in str(e.value)
  uneven = write_set(tmp_path / "uneven", drop=("ru", 4))
  with pytest.raises(ValueError, match=r"train/ru: lacks id 'train-004'"):
    pinch_lib.RECIPE.check_config(_tiny(inputs, **{"pinch.parallel_set": uneven}))
  klingon = write_set(tmp_path / "klingon", languages=("en", "ar", "qaa"))
  with pytest.raises(ValueError, match="language 'qaa' is not one the offline language identifier"):
    pinch_lib.RECIPE.check_config(
        _tiny(inputs, **{"pinch.parallel_set": klingon, "pinch.languages": ("ar",)})
    )


# --- Every stage on a tiny model -----------------------------------------------------------


def test_tiny_run_every_stage_and_the_if_score(inputs, tmp_path, monkeypatch):
  # The monolingual references' answers: a workdir per language holding evaluate/responses.jsonl.
  prompts = list(
      pinch_recipe.prompt_records(
          parallel_sets.read_parallel_set(inputs["parallel_set"], "heldout"), 2
      )
  )
  for lang in ("en", "ar", "ru"):
    rows = [
        {"language": p["language"], "prompt": p["prompt"], "response": "REFERENCE"}
        for p in prompts
        if p["language"] == lang
    ]
    os.makedirs(tmp_path / f"mono-{lang}" / "evaluate")
    fx.data_fixtures.write_jsonl(tmp_path / f"mono-{lang}" / "evaluate" / "responses.jsonl", rows)
  # A judge that always prefers the reference's answer, in either order: IF score 0.
  monkeypatch.setattr(
      judging,
      "make_judge",
      lambda config, role: lambda triples: [
          FIRST if a == "REFERENCE" else SECOND for _, a, _ in triples
      ],
  )
  config = _tiny(
      inputs,
      **{
          "pinch.evaluate.monolingual_workdir": str(tmp_path / "mono-{lang}"),
          "pinch.evaluate.judge.base_url": "http://127.0.0.1:9/v1",
      },
  )
  work = str(tmp_path / "work")
  result = run_recipe(pinch_lib.RECIPE, config, work, log=lambda _: None)
  assert result["status"] == "done"
  assert os.path.exists(os.path.join(work, "sft", "hf", "config.json"))
  sft = result["stages"]["sft"]
  assert sft["step"] == 2 and sft["tokens_seen"] > 0
  final = {}
  for row in _read(os.path.join(work, "sft", "metrics.jsonl")):
    final.update(row)
  for lang in ("en", "ar", "ru"):
    assert 0.0 <= final[f"eval/language_match/{lang}"] <= 1.0
    assert final[f"eval/reference_nll/{lang}"] > 0.0
  evaluation = result["stages"]["evaluate"]
  assert {evaluation[f"if_score/{lang}"] for lang in ("en", "ar", "ru")} == {0.0}
  assert evaluation["if_pairs/ar"] == evaluation["if_judged_pairs/ar"] == 2.0
  assert evaluation["if_unparsed_verdicts/ar"] == 0.0
  responses = _read(os.path.join(work, "evaluate", "responses.jsonl"))
  assert len(responses) == 6 and {r["language"] for r in responses} == {"en", "ar", "ru"}
  # The mixture the SFT stage trained on: loss on assistant tokens only, from the mixture file.
  ctx = StageContext(config, work, pinch_lib.RECIPE.paths(work, config), {}, print, "pinch")
  sft_config = pinch_recipe.sft_config(ctx)
  assert sft_config.data.sources.mixture.loss == "assistant"
  assert sft_config.evals.responses.prompts.endswith("mixture/prompts.jsonl")
  again = run_recipe(pinch_lib.RECIPE, config, work, log=lambda _: None)
  assert all(s["skipped"] for s in again["stages"].values())


def test_a_base_student_runs_in_the_published_chat_template(inputs, tmp_path):
  # The published student is a base model (no chat template of its own): the mixture is trained,
  # the held-out prompts answered during SFT (config.evals) and by sft/hf in Llama-3's template,
  # which sft/hf ships.
  from langshift.tokenization import chat_templates
  from langshift.tokenization.tokenizer import load_tokenizer

  base = fx.write_chat_model(tmp_path / "base", chat_template=None)
  config = _tiny({**inputs, "model": base})
  assert config.data.chat_template == "llama3"
  work = str(tmp_path / "work")
  result = run_recipe(pinch_lib.RECIPE, config, work, log=lambda _: None)
  assert result["status"] == "done"
  sft = result["stages"]["sft"]
  assert "eval/language_match/ar_after" in sft
  assert len(_read(os.path.join(work, "evaluate", "responses.jsonl"))) == 6
  export = os.path.join(work, "sft", "hf")
  assert load_tokenizer(export).chat_template == chat_templates.BUILTIN_TEMPLATES["llama3"]


def test_train_epochs_set_the_steps_from_the_mixtures_packed_rows(inputs, tmp_path):
  # The published setting trains 3 epochs (train.epochs, counted by the recipe's training
  # stage); the summary reports the steps and the mixture's tokens they were counted from.
  assert (
      experiment.get_config().train.epochs == 3.0 and "epochs" not in experiment.get_config().pinch
  )
  config = _tiny(inputs, **{"train.epochs": 1.0, "stop_after": "sft"})
  result = run_experiment(config, str(tmp_path / "work"))
  assert result["status"] == "stopped"
  sft = result["stages"]["sft"]
  assert sft["step"] == sft["epoch_steps"] > 2 and sft["epoch_tokens"] > 0
  with pytest.raises(ValueError, match=r"^config.train.epochs=-1.0; expected >= 0$"):
    pinch_lib.RECIPE.check_config(_tiny(inputs, **{"train.epochs": -1.0}))


def test_finished_stages_keep_through_operational_changes_and_rerun_for_what_they_read(
    inputs, tmp_path
):
  # A judge's retries, its endpoint and batch sizes change how a stage runs, not what it wrote:
  # the finished stages stay finished. The SFT writes sft/hf in checkpoint.export_dtype with the
  # run's tokenizer: changing either is another experiment, named in the error.
  config = _tiny(inputs)
  work = str(tmp_path / "work")
  assert run_experiment(config, work)["status"] == "done"
  operational = {
      "pinch.evaluate.judge.max_retries": 9,
      "pinch.evaluate.judge.base_url": "http://127.0.0.1:9/v1",
      "pinch.evaluate.batch_size": 2,
      "evals.responses.batch_size": 2,
  }
  again = run_experiment(config_lib.apply_overrides(config, operational), work)
  assert all(s["skipped"] for s in again["stages"].values())
  for key, value in (("checkpoint.export_dtype", "bfloat16"), ("tokenizer", inputs["model"])):
    with pytest.raises(ValueError, match=rf"^stage sft .* another config: {key}"):
      run_experiment(config_lib.apply_overrides(config, {key: value}), work)


def test_pinch_exists_once_the_engine_has_no_pinch_mixer():
  from langshift.data import config as data_config_lib  # pylint: disable=import-outside-toplevel

  data = data_config_lib.default_data_config()
  assert "pinch" not in data and data_config_lib.MIXERS == ("weighted",)
  data.sources.inst = data_config_lib.source_config(path="x.jsonl", template="chat")
  data.mixer = "pinch"
  with pytest.raises(ValueError, match=r"^data.mixer='pinch'; expected one of \('weighted',\)"):
    data_config_lib.validate_data_config(data)


# --- The sweep's report --------------------------------------------------------------------


def test_report_tables_one_column_per_language_and_plots(tmp_path):
  from langshift.recipes.pinch import report as pinch_report  # pylint: disable=import-outside-toplevel

  cells = [
      ("pinch.percent=0.0", {"pinch.percent": 0.0}, {"ar": 0.25, "en": 1.0}),
      ("pinch.percent=10.0", {"pinch.percent": 10.0}, {"ar": 0.75, "en": 1.0}),
      (
          "pinch.split=uniform,pinch.num_languages=2",
          {"pinch.split": "uniform", "pinch.num_languages": 2},
          {"ar": 0.5, "en": 0.875},
      ),
  ]
  for name, _, match in cells:
    os.makedirs(tmp_path / name / "sft")
    row = {"step": 9, **{f"eval/language_match/{k}": v for k, v in match.items()}}
    row["eval/reference_nll/ar"] = 2.5
    fx.data_fixtures.write_jsonl(tmp_path / name / "sft" / "metrics.jsonl", [row])
  manifest = {"experiment": "experiments/pinch.py:cpu", "flags": [], "cells": []}
  manifest["cells"] = [{"name": n, "overrides": o} for n, o, _ in cells]
  with open(tmp_path / "sweep.json", "w") as f:
    json.dump(manifest, f)
  paths = pinch_report.write_report(str(tmp_path))
  with open(paths["md"]) as f:
    text = f.read()
  assert "| cell | en | ar |" in text  # English first
  assert "| P=0 | 1 | 0.25 |" in text and "| P=10 | 1 | 0.75 |" in text
  assert "| 2 languages | 0.875 | 0.5 |" in text
  assert "reference NLL" in text and "IF score" not in text  # no judge ran
  assert os.path.getsize(paths["language_match"]) > 0


def test_a_mixture_file_under_a_sweep_cell_name_with_commas_is_read(tmp_path):
  from langshift.data.sources import expand_paths  # pylint: disable=import-outside-toplevel

  cell = tmp_path / "pinch.split=uniform,pinch.num_languages=2" / "mixture"
  os.makedirs(cell)
  (cell / "train.jsonl").write_text("{}\n")
  assert expand_paths(str(cell / "train.jsonl")) == [str(cell / "train.jsonl")]
  (tmp_path / "a.jsonl").write_text("{}\n")
  (tmp_path / "b.jsonl").write_text("{}\n")  # a list of files still splits at commas
  both = expand_paths(f"{tmp_path}/a.jsonl,{tmp_path}/b.jsonl")
  assert both == [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]
