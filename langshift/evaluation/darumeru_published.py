"""Darumeru scored as Tikhomirov & Chernyshev 2024 report it ("Facilitating large language model
Russian adaptation with Learned Embedding Propagation", arXiv:2412.21140, Sec. 2.3, Tables 1-3).

Each task has its own metric (Sec. 2.3.2-2.3.4); where the paper names two, the task's score is
their mean:

  task                         group           metric (the task's score)
  PARus                        DaruMERA        accuracy, an example right only when both orders of
                                               its alternatives are answered right
  RWSD                         DaruMERA        accuracy
  RCB, ruOpenBookQA,           DaruMERA        mean of accuracy and F1-macro
  ruWorldTree
  RuCoLA                       DaruMERA        mean of accuracy and MCC
  MultiQ                       DaruMERA        mean of F1 and exact match (best over the answers)
  USE                          DaruMERA        normalised total grade
  ruMMLU, MMLU-ru, MMLU-en     DaruMMLU        accuracy
  Gazeta (filtered)            DaruSum         mean of ROUGE-1 and ROUGE-2 recall (abstractive)
  Gazeta, extractive           DaruSum         R-precision of the ranked source sentences
  copy sentence / paragraph    DaruCopy (EN),  length ratio in tokens / share of copies with
                               DaruCopy (RU)   LCS >= 99% of the source

A group's score is the mean of its tasks' scores; Micro-Avg is the mean over all tasks (17 in the
paper: Table 1's Micro-Avg is the task-weighted mean of its group columns). The harness's
`eval/<task>/<metric>` figures use one metric per task; `published_scores` recomputes the paper's
from the per-example records the harness logs (`run_eval_suite(samples=...)`).

Gazeta's filter (Sec. 2.3.3): the paper keeps the examples whose summary sentences are at most 20%
unsupported by the document (LLaMa-3-70B found the supporting citations). Darumeru's DaruSum files
(`src_sents`, `summary_sents`, `extractive_summary`) are that filtered set; raw Gazeta rows that
carry per-sentence support (`summary_support`: one entry per summary sentence, a boolean or a list
of citations) are filtered by `keep_gazeta_row` when read (`darumeru.py`).

The extractive DaruSum task (the model ranks source sentences) is not run by the suite: its
R-precision is here, the task is missing from the averages, and `darumeru/tasks` says how many
tasks they cover.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from langshift.evaluation import metrics as metrics_lib
from langshift.evaluation import use_exam

# --- Per-task metrics. ---


def accuracy(golds: Sequence[str], preds: Sequence[str]) -> float:
  return sum(g == p for g, p in zip(golds, preds)) / len(golds) if golds else math.nan


def f1_macro(golds: Sequence[str], preds: Sequence[str]) -> float:
  """Unweighted mean of the per-label F1 over every label seen in either list (a label never
  predicted, or never gold, scores 0), as scikit-learn's `f1_score(average="macro")`."""
  labels = sorted(set(golds) | set(preds))
  if not labels:
    return math.nan
  total = 0.0
  for label in labels:
    tp = sum(g == label and p == label for g, p in zip(golds, preds))
    fp = sum(g != label and p == label for g, p in zip(golds, preds))
    fn = sum(g == label and p != label for g, p in zip(golds, preds))
    total += 2 * tp / (2 * tp + fp + fn) if tp else 0.0
  return total / len(labels)


def mcc(golds: Sequence[str], preds: Sequence[str]) -> float:
  """Matthews correlation coefficient (Gorodkin's multiclass form, = the binary phi coefficient
  for two labels); 0 when a list has a single label (scikit-learn's convention)."""
  n = len(golds)
  if not n:
    return math.nan
  gold_counts, pred_counts = collections.Counter(golds), collections.Counter(preds)
  correct = sum(g == p for g, p in zip(golds, preds))
  labels = set(gold_counts) | set(pred_counts)
  cov_gp = correct * n - sum(gold_counts[k] * pred_counts[k] for k in labels)
  cov_pp = n * n - sum(v * v for v in pred_counts.values())
  cov_gg = n * n - sum(v * v for v in gold_counts.values())
  if cov_pp == 0 or cov_gg == 0:
    return 0.0
  return cov_gp / math.sqrt(cov_pp * cov_gg)


def both_orders_accuracy(direct: Sequence[bool], swapped: Sequence[bool]) -> float:
  """PARus: share of examples answered right with the alternatives as given and swapped."""
  if len(direct) != len(swapped):
    raise ValueError(f"PARus: {len(direct)} direct and {len(swapped)} swapped predictions")
  return sum(a and b for a, b in zip(direct, swapped)) / len(direct) if direct else math.nan


def r_precision(labels: Sequence[bool], scores: Sequence[float]) -> float:
  """Of the R source sentences in the reference extractive summary, the share among the R
  highest-scored (DaruSum's extractive score, per document)."""
  r = sum(bool(x) for x in labels)
  if not r:
    return math.nan
  order = sorted(range(len(scores)), key=lambda i: -scores[i])[:r]
  return sum(bool(labels[i]) for i in order) / r


def token_length_ratio(prediction: str, source: str, count_tokens: Callable[[str], int]) -> float:
  """min(p/s, s/p) of the token counts (DaruCopy's sentence score); 0 for an empty copy."""
  p, s = count_tokens(prediction.strip()), count_tokens(source.strip())
  if p == 0 or s == 0:
    return float(p == s)
  return min(p / s, s / p)


def _mean(values: Sequence[float]) -> float:
  values = [v for v in values if not math.isnan(v)]
  return sum(values) / len(values) if values else math.nan


# --- The tasks, their groups and metrics. ---


@dataclasses.dataclass(frozen=True)
class PublishedTask:
  group: str
  metrics: tuple[str, ...]  # the task's score is their mean


GROUPS = ("DaruMMLU", "DaruMERA", "DaruSum", "DaruCopy (EN)", "DaruCopy (RU)")
_ACC_F1 = ("accuracy", "f1_macro")
TASKS = {
    "multiq": PublishedTask("DaruMERA", ("f1", "exact_match")),
    "parus": PublishedTask("DaruMERA", ("both_orders_accuracy",)),
    "rcb": PublishedTask("DaruMERA", _ACC_F1),
    "ruopenbookqa": PublishedTask("DaruMERA", _ACC_F1),
    "ruworldtree": PublishedTask("DaruMERA", _ACC_F1),
    "rwsd": PublishedTask("DaruMERA", ("accuracy",)),
    "use": PublishedTask("DaruMERA", ("grade_norm",)),
    "rucola": PublishedTask("DaruMERA", ("accuracy", "mcc")),
    "rummlu": PublishedTask("DaruMMLU", ("accuracy",)),
    "mmlu_ru": PublishedTask("DaruMMLU", ("accuracy",)),
    "mmlu_en": PublishedTask("DaruMMLU", ("accuracy",)),
    "gazeta": PublishedTask("DaruSum", ("rouge12_recall",)),
    "gazeta_extractive": PublishedTask("DaruSum", ("r_precision",)),
    "cp_sent_en": PublishedTask("DaruCopy (EN)", ("length_ratio",)),
    "cp_para_en": PublishedTask("DaruCopy (EN)", ("copy_rate",)),
    "cp_sent_ru": PublishedTask("DaruCopy (RU)", ("length_ratio",)),
    "cp_para_ru": PublishedTask("DaruCopy (RU)", ("copy_rate",)),
}
PAPER_TASK_COUNT = len(TASKS)  # 17 (Sec. 2.3)
SWAPPED_PARUS = "parus_swapped"


def choice_task_metrics(task: str, golds, preds, swapped_correct=None) -> dict[str, float]:
  """The paper's metrics of a choice task from gold and predicted labels (PARus: also whether
  each example's swapped twin was answered right)."""
  if task == "parus":
    if swapped_correct is None:
      raise ValueError(
          "task parus: the paper counts an example only when both orders of its alternatives are "
          f"answered right; run the suite from `with_swapped_parus` (task {SWAPPED_PARUS!r})"
      )
    direct = [g == p for g, p in zip(golds, preds)]
    return {"both_orders_accuracy": both_orders_accuracy(direct, swapped_correct)}
  out = {"accuracy": accuracy(golds, preds)}
  wanted = TASKS[task].metrics if task in TASKS else ()
  if "f1_macro" in wanted:
    out["f1_macro"] = f1_macro(golds, preds)
  if "mcc" in wanted:
    out["mcc"] = mcc(golds, preds)
  return out


def generation_task_metrics(
    task: str,
    outputs: Sequence[str],
    examples: Sequence[Any],
    count_tokens: Callable[[str], int] | None = None,
) -> dict[str, float]:
  """The paper's metrics of a generation task; `examples` carry `target`, `references`, `meta`.
  Copy lengths are counted in the evaluated model's tokens when `count_tokens` is given (the
  paper's), else in characters."""
  refs = [e.references or (e.target,) for e in examples]

  def best(metric):
    return _mean([max(metric(o, r) for r in rs) for o, rs in zip(outputs, refs)])

  wanted = TASKS[task].metrics
  if "grade_norm" in wanted:
    return {"grade_norm": use_exam.grade_norm(outputs, examples)}
  out = {}
  if "f1" in wanted:
    out["f1"] = best(metrics_lib.token_f1)
  if "exact_match" in wanted:
    out["exact_match"] = best(metrics_lib.exact_match)
  if "rouge12_recall" in wanted:
    out["rouge1_recall"] = best(metrics_lib.rouge_n_recall)
    out["rouge2_recall"] = best(lambda p, r: metrics_lib.rouge_n_recall(p, r, 2))
    out["rouge12_recall"] = best(metrics_lib.rouge12_recall)
  if "length_ratio" in wanted:
    if count_tokens is None:
      out["length_ratio"] = best(metrics_lib.length_ratio)
    else:
      out["length_ratio"] = best(lambda p, r: token_length_ratio(p, r, count_tokens))
  if "copy_rate" in wanted:
    out["copy_rate"] = best(metrics_lib.copy_success)
  return out


def task_score(task: str, task_metrics: dict[str, float]) -> float:
  return _mean([task_metrics[m] for m in TASKS[task].metrics])


def summarize(per_task: dict[str, dict[str, float]], prefix: str = "darumeru") -> dict[str, float]:
  """`<prefix>/<task>/<metric>`, `<prefix>/<task>/score`, each group's mean of its tasks' scores,
  `<prefix>/micro_avg` over the tasks present and `<prefix>/tasks` (the paper has 17)."""
  out: dict[str, float] = {}
  scores: dict[str, float] = {}
  for task, values in per_task.items():
    for name, value in values.items():
      out[f"{prefix}/{task}/{name}"] = value
    scores[task] = out[f"{prefix}/{task}/score"] = task_score(task, values)
  for group in GROUPS:
    members = [s for t, s in scores.items() if TASKS[t].group == group]
    if members:
      out[f"{prefix}/{group}"] = _mean(members)
  out[f"{prefix}/micro_avg"] = _mean(list(scores.values()))
  out[f"{prefix}/tasks"] = len(scores)
  return out


# --- From the harness's per-example records. ---


def published_scores(
    suite,
    samples: Sequence[dict],
    count_tokens: Callable[[str], int] | None = None,
    prefix: str = "darumeru",
) -> dict[str, float]:
  """The paper's metrics of every Darumeru task in `samples` (the records `run_eval_suite`
  logged when running `suite`); tasks the paper does not have are ignored. PARus logged without
  its swapped twin (a suite not made by `with_swapped_parus`) is left out of the averages and
  marked `<prefix>/skipped/parus`."""
  from langshift.evaluation.tasks import load_examples  # pylint: disable=import-outside-toplevel

  by_task: dict[str, list[dict]] = collections.defaultdict(list)
  for s in samples:
    by_task[s["task"]].append(s)
  specs = {t.name: t for t in suite.tasks}
  per_task: dict[str, dict[str, float]] = {}
  skipped: list[str] = []
  for task, records in by_task.items():
    if task not in TASKS:
      continue
    records = sorted(records, key=lambda s: s["index"])
    if "pred" in records[0]:
      golds = [r["choices"][r["gold"]] for r in records]
      preds = [r["choices"][r["pred"]] for r in records]
      swapped = None
      if task == "parus":
        if SWAPPED_PARUS not in by_task:
          # Logged without its twin (e.g. the LEP stage's samples): left out, not mis-scored.
          skipped.append(task)
          continue
        twins = sorted(by_task[SWAPPED_PARUS], key=lambda s: s["index"])
        swapped = [r["pred"] == r["gold"] for r in twins]
      per_task[task] = choice_task_metrics(task, golds, preds, swapped)
    else:
      examples = load_examples(specs[task])
      if len(examples) != len(records):
        raise ValueError(
            f"task {task}: {len(records)} logged outputs for {len(examples)} examples of "
            f"{specs[task].path}"
        )
      outputs = [r["output"] for r in records]
      per_task[task] = generation_task_metrics(task, outputs, examples, count_tokens)
  out = summarize(per_task, prefix)
  out.update({f"{prefix}/skipped/{task}": 1 for task in skipped})
  return out


# --- PARus in both orders. ---


def swap_parus_record(where: str, record: dict) -> dict:
  """The record with its two alternatives exchanged and its answer flipped."""
  from langshift.evaluation.benchmarks.tables import format_error  # pylint: disable=import-outside-toplevel

  inputs = record.get("inputs")
  if not isinstance(inputs, dict) or "choice1" not in inputs or "choice2" not in inputs:
    raise format_error(where, "PARus record without 'inputs.choice1' and 'inputs.choice2'")
  answer = str(record.get("outputs", "")).strip()
  if answer not in ("1", "2"):
    raise format_error(where, f"PARus field 'outputs' is {answer!r}, expected 1 or 2")
  swapped = dict(record, outputs="2" if answer == "1" else "1")
  swapped["inputs"] = dict(inputs, choice1=inputs["choice2"], choice2=inputs["choice1"])
  return swapped


def with_swapped_parus(suite, out_dir: str):
  """`suite` plus a `parus_swapped` task (PARus with its alternatives exchanged, out of the
  harness's micro-average), its file written under `out_dir`."""
  from langshift.evaluation.benchmarks.tables import read_rows  # pylint: disable=import-outside-toplevel
  from langshift.evaluation.tasks import Suite  # pylint: disable=import-outside-toplevel

  specs = [t for t in suite.tasks if t.name == "parus"]
  if not specs:
    return suite
  spec = specs[0]
  path = os.path.join(out_dir, "parus_swapped.jsonl")
  os.makedirs(out_dir, exist_ok=True)
  rows = [swap_parus_record(where, row) for where, row in read_rows(spec.path)]
  with open(path, "w", encoding="utf-8") as f:
    f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
  # Demonstrations stay the task's own (Darumeru swaps the query only).
  twin = dataclasses.replace(
      spec, name=SWAPPED_PARUS, path=path, fewshot_path=spec.fewshot_path, in_average=False
  )
  return Suite(suite.name, (*suite.tasks, twin))


# --- Gazeta's filter. ---

MAX_UNSUPPORTED = 0.2  # share of unsupported summary sentences above which an example is dropped


def keep_gazeta_row(where: str, row: dict) -> bool:
  """False for a row whose `summary_support` marks more than 20% of its summary sentences as
  unsupported by the document; rows without it are kept (Darumeru's files are already
  filtered)."""
  from langshift.evaluation.benchmarks.tables import format_error  # pylint: disable=import-outside-toplevel

  support = row.get("summary_support")
  if support is None:
    return True
  if not isinstance(support, list) or not support:
    raise format_error(where, "field 'summary_support' is not a list (one entry per sentence)")
  unsupported = sum(not (s if isinstance(s, bool) else bool(s)) for s in support)
  return unsupported / len(support) <= MAX_UNSUPPORTED


# --- Command line: re-score a logged run, or run the suite with PARus in both orders. ---


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m langshift.evaluation.darumeru_published",
      description="Darumeru scored with each task's published metric and the paper's averages.",
  )
  parser.add_argument("--data_dir", required=True, help="folder of the Darumeru suite's files")
  parser.add_argument("--samples", default="", help="re-score these logged samples (JSONL)")
  parser.add_argument("--model_dir", default="", help="or evaluate this HF checkpoint")
  parser.add_argument("--output_dir", required=True)
  parser.add_argument("--protocol", default="auto", choices=("auto", "base", "instruct"))
  parser.add_argument("--max_examples", type=int, default=None)
  parser.add_argument("--batch_size", type=int, default=8)
  args = parser.parse_args(argv)
  # pylint: disable=import-outside-toplevel
  from langshift.evaluation.tasks import load_suite, resolve_suite_path

  try:
    overrides = {} if args.max_examples is None else {"max_examples": args.max_examples}
    suite = load_suite(resolve_suite_path("darumeru"), data_dir=args.data_dir, **overrides)
    count_tokens = None
    if args.model_dir:
      from langshift.tokenization.tokenizer import load_tokenizer

      tokenizer = load_tokenizer(args.model_dir)
      count_tokens = lambda text: len(tokenizer.encode(text, add_special_tokens=False))  # noqa: E731
    if args.samples:
      with open(args.samples, encoding="utf-8") as f:
        samples = [json.loads(line) for line in f if line.strip()]
    elif args.model_dir:
      from langshift.evaluation.run import evaluate_model_dir

      suite = with_swapped_parus(suite, args.output_dir)
      suite_path = os.path.join(args.output_dir, "suite.json")
      with open(suite_path, "w", encoding="utf-8") as f:
        json.dump({"name": suite.name, "tasks": [_spec_json(t) for t in suite.tasks]}, f)
      samples = []
      evaluate_model_dir(
          args.model_dir,
          suite_path,
          protocol=args.protocol,
          batch_size=args.batch_size,
          samples=samples,
      )
    else:
      raise ValueError("give --samples (a logged run) or --model_dir")
    results = published_scores(suite, samples, count_tokens)
  except (ValueError, FileNotFoundError) as e:
    print(f"darumeru_published: {e}", file=sys.stderr)
    return 1
  os.makedirs(args.output_dir, exist_ok=True)
  with open(os.path.join(args.output_dir, "darumeru_published.json"), "w") as f:
    json.dump(results, f, indent=1, sort_keys=True)
  for name in sorted(results):
    print(f"{name}\t{results[name]:.4f}")
  return 0


def _spec_json(spec) -> dict:
  out = dataclasses.asdict(spec)
  for key in ("choices", "stop"):
    out[key] = list(out[key])
  for key in ("path", "fewshot_path"):
    if out[key]:
      out[key] = os.path.abspath(out[key])
  return {k: v for k, v in out.items() if v is not None}


if __name__ == "__main__":
  sys.exit(main())
