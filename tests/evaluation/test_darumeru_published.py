"""Darumeru's per-task metrics and averages as the LEP paper reports them, pinned on hand-computed
records and checked against scikit-learn and rouge_score."""

import json
import math

import pytest
from rouge_score import rouge_scorer
from sklearn import metrics as sk

from langshift.evaluation import darumeru_published as dp
from langshift.evaluation import metrics as metrics_lib
from langshift.evaluation.harness import run_eval_suite
from langshift.evaluation.tasks import (
    Example,
    TaskSpec,
    load_examples,
    load_suite,
    resolve_suite_path,
)
from langshift.rehearsal import darumeru_files
from tests.evaluation.test_darumeru import Answers, PrefersFirstLabel


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("data")
  darumeru_files.write_darumeru_files(str(root))
  return str(root)


def test_rcb_accuracy_and_f1_macro_by_hand_and_as_scikit_learn():
  golds, preds = ["1", "1", "2", "3"], ["1", "2", "2", "2"]
  # F1 per label: "1" 2/3 (tp 1, fn 1), "2" 1/2 (tp 1, fp 2), "3" 0 (never predicted).
  m = dp.choice_task_metrics("rcb", golds, preds)
  assert m == pytest.approx({"accuracy": 0.5, "f1_macro": (2 / 3 + 1 / 2 + 0) / 3})
  assert m["f1_macro"] == pytest.approx(sk.f1_score(golds, preds, average="macro"))
  assert dp.task_score("rcb", m) == pytest.approx((0.5 + 7 / 18) / 2)
  # A label predicted but never gold counts as well (scikit-learn's label set is the union).
  golds, preds = ["A", "A", "B", "B", "C"], ["A", "D", "B", "A", "C"]
  assert dp.f1_macro(golds, preds) == pytest.approx(sk.f1_score(golds, preds, average="macro"))


def test_rucola_accuracy_and_mcc_by_hand_and_as_scikit_learn():
  golds, preds = ["1", "1", "0", "0"], ["1", "0", "0", "0"]
  # TP 1, FN 1, TN 2, FP 0: (1*2 - 0*1) / sqrt(1 * 2 * 2 * 3).
  m = dp.choice_task_metrics("rucola", golds, preds)
  assert m == pytest.approx({"accuracy": 0.75, "mcc": 2 / math.sqrt(12)})
  for gold_labels, predicted in (
      (golds, preds),
      (["0", "1", "2", "2", "1"], ["0", "2", "2", "1", "1"]),  # multiclass
      (["1", "0", "1"], ["1", "1", "1"]),  # constant prediction: 0
  ):
    assert dp.mcc(gold_labels, predicted) == pytest.approx(
        sk.matthews_corrcoef(gold_labels, predicted)
    )


def test_parus_counts_an_example_only_when_both_orders_are_right():
  golds, preds = ["1", "2", "1"], ["1", "2", "2"]
  assert dp.choice_task_metrics("parus", golds, preds, [True, False, True]) == {
      "both_orders_accuracy": pytest.approx(1 / 3)
  }
  with pytest.raises(ValueError, match="task parus: .* both orders .*parus_swapped"):
    dp.choice_task_metrics("parus", golds, preds)


def _russian_words(text):
  return metrics_lib.tokens_of(metrics_lib.normalize_answer(text))


class _Tokenizer:
  tokenize = staticmethod(_russian_words)


def test_rouge_recall_as_rouge_score():
  pred, ref = "cat sat on red mat", "cat sat on mat today"
  # ROUGE-1 recall 4/5; ROUGE-2: "cat sat", "sat on" of 4 reference bigrams.
  assert metrics_lib.rouge12_recall(pred, ref) == pytest.approx((4 / 5 + 2 / 4) / 2)
  scores = rouge_scorer.RougeScorer(["rouge1", "rouge2"]).score(ref, pred)
  assert metrics_lib.rouge_n_recall(pred, ref, 1) == pytest.approx(scores["rouge1"].recall)
  assert metrics_lib.rouge_n_recall(pred, ref, 2) == pytest.approx(scores["rouge2"].recall)
  # Cyrillic (rouge_score's own tokenizer keeps a-z0-9 only: give it ours). Reference words 6,
  # 3 in the prediction ("открыли", "новый", "парк"); bigrams 5, 1 shared ("открыли новый").
  pred, ref = "Власти Москвы открыли новый парк.", "В Москве открыли новый большой парк"
  scores = rouge_scorer.RougeScorer(["rouge1", "rouge2"], tokenizer=_Tokenizer()).score(ref, pred)
  m = dp.generation_task_metrics("gazeta", [pred], [Example(prompt="", target=ref)])
  assert m["rouge1_recall"] == pytest.approx(scores["rouge1"].recall) == pytest.approx(3 / 6)
  assert m["rouge2_recall"] == pytest.approx(scores["rouge2"].recall) == pytest.approx(1 / 5)
  assert m["rouge12_recall"] == pytest.approx((3 / 6 + 1 / 5) / 2)


def test_multiq_mean_of_f1_and_exact_match_best_over_answers():
  examples = [
      Example(prompt="", target="Москва", references=("Москва", "в Москве")),
      Example(prompt="", target="Лондон", references=("Лондон",)),
  ]
  # "город Москва" vs "Москва": precision 1/2, recall 1 -> F1 2/3; no exact match.
  m = dp.generation_task_metrics("multiq", ["город Москва", "Лондон."], examples)
  assert m == pytest.approx({"f1": (2 / 3 + 1) / 2, "exact_match": 1 / 2})
  assert dp.task_score("multiq", m) == pytest.approx(((2 / 3 + 1) / 2 + 1 / 2) / 2)


def test_copy_tasks_count_tokens_and_r_precision():
  words = lambda text: len(text.split())  # noqa: E731
  source = Example(prompt="", target="one two three four")
  m = dp.generation_task_metrics("cp_sent_en", ["one two three"], [source], count_tokens=words)
  assert m == {"length_ratio": pytest.approx(3 / 4)}
  m = dp.generation_task_metrics("cp_para_en", ["one two three four", "one two"], [source] * 2)
  assert m == {"copy_rate": 0.5}
  # R = 2 reference sentences; the two best-scored are sentences 0 (in) and 1 (out).
  assert dp.r_precision([True, False, True, False], [0.9, 0.8, 0.1, 0.5]) == 0.5


def test_group_scores_and_micro_average_as_in_the_papers_table_1():
  # OpenChat 3.5's row of Table 1: DaruMMLU 0.543, DaruMERA 0.526, DaruSum 0.322, DaruCopy (EN)
  # 0.999, DaruCopy (RU) 0.917, Micro-Avg 0.607 -- the mean over the 17 tasks.
  column = {"DaruMMLU": 0.543, "DaruMERA": 0.526, "DaruSum": 0.322}
  column.update({"DaruCopy (EN)": 0.999, "DaruCopy (RU)": 0.917})
  per_task = {
      task: {metric: column[spec.group] for metric in spec.metrics}
      for task, spec in dp.TASKS.items()
  }
  out = dp.summarize(per_task)
  assert out["darumeru/tasks"] == dp.PAPER_TASK_COUNT == 17
  assert {g: out[f"darumeru/{g}"] for g in dp.GROUPS} == pytest.approx(column)
  assert round(out["darumeru/micro_avg"], 3) == 0.607


def test_published_scores_from_the_harness_samples(data_dir, tmp_path):
  suite = dp.with_swapped_parus(
      load_suite(resolve_suite_path("darumeru"), data_dir=data_dir), str(tmp_path)
  )
  with open(tmp_path / "parus_swapped.jsonl") as f:
    first = json.loads(f.readline())
  assert first["outputs"] == "2" and first["inputs"]["choice1"] == "то"  # was "1", "это"
  samples = []
  metrics = run_eval_suite(
      suite, scorer=PrefersFirstLabel(), generator=Answers("Москва"), samples=samples
  )
  assert "eval/parus_swapped/accuracy" in metrics
  out = dp.published_scores(suite, samples)
  # Always label "1": right on half of PARus as given, on the other half swapped, never on both
  # (the harness's plain accuracy says 0.5).
  assert metrics["eval/parus/accuracy"] == 0.5
  assert out["darumeru/parus/both_orders_accuracy"] == 0.0
  # RuCoLA: always "0" against 0, 1, 0, 1, ...: accuracy 0.5, MCC 0.
  assert out["darumeru/rucola/score"] == pytest.approx(0.25)
  # RCB: always "1" against 1, 2, 3, 1, 2, 3: accuracy 1/3; F1 of "1" 1/2, of "2" and "3" 0.
  assert out["darumeru/rcb/score"] == pytest.approx((1 / 3 + 1 / 6) / 2)
  assert out["darumeru/multiq/score"] == 1.0  # "Москва" is one of the answers
  assert out["darumeru/tasks"] == 16  # every task but the extractive DaruSum
  groups = [out[f"darumeru/{g}"] for g in dp.GROUPS]
  task_scores = [v for k, v in out.items() if k.endswith("/score")]
  assert out["darumeru/micro_avg"] == pytest.approx(sum(task_scores) / 16)
  assert all(0.0 <= g <= 1.0 for g in groups)

  # Samples of a run without the twin (the LEP stage's): PARus is left out and marked.
  plain = dp.published_scores(suite, [s for s in samples if s["task"] != "parus_swapped"])
  assert "darumeru/parus/score" not in plain and plain["darumeru/skipped/parus"] == 1
  assert plain["darumeru/tasks"] == 15

  path = tmp_path / "samples.jsonl"
  path.write_text("".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples))
  assert dp.main([f"--data_dir={data_dir}", f"--samples={path}", f"--output_dir={tmp_path}"]) == 0
  with open(tmp_path / "darumeru_published.json") as f:
    assert json.load(f)["darumeru/parus/both_orders_accuracy"] == 0.0


def test_gazeta_filter_and_darusum_layout(tmp_path):
  rows = [
      {"title": "t", "text": "a", "summary": "s", "summary_support": [True] * 4 + [False]},
      {"title": "t", "text": "b", "summary": "s", "summary_support": [[3], []]},  # 50% unsupported
      {"title": "t", "text": "c", "summary": "s"},  # no annotation: kept
      {"src_sents": ["Первое.", "Второе."], "summary_sents": ["Итог."], "extractive_summary": [1]},
  ]
  path = tmp_path / "gazeta.jsonl"
  path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
  spec = TaskSpec("gazeta", "generation", str(path), metric="rouge12_recall", format="gazeta")
  examples = load_examples(spec)
  assert [e.target for e in examples] == ["s", "s", "Итог."]
  assert "Первое. Второе." in examples[-1].prompt
  path.write_text(json.dumps({"text": "a", "summary": "s", "summary_support": "yes"}) + "\n")
  with pytest.raises(ValueError, match=r"gazeta.jsonl line 1: field 'summary_support'"):
    load_examples(spec)
