r"""Runs a suite's choice and perplexity tasks with langshift and with EleutherAI's
lm-evaluation-harness (`hf` backend) on the same checkpoint and the same prompts, and compares
them example by example.

  python -m langshift.evaluation.lm_eval_compare --model_dir=.cache/smollm2-135m-instruct \
      --suite=handbook_mini --protocol=instruct --max_examples=10

lm-eval is a test extra (`pip install -e .[test]`); it needs torch and transformers, langshift
does not. Each task becomes an lm-eval task over a JSON-lines copy of its examples (`prompt`,
`choices`, `gold`; `text` for perplexity), with lm-eval's `first_n` demonstration sampler; the
langshift side runs the same tasks with `fewshot_sampler="first_n"`, so both see the same
demonstrations. Generation tasks and tasks in other record layouts are left out.

Printed per task: examples, both accuracies, the largest per-choice log-likelihood difference
(nats), and how many predictions differ; for perplexity tasks the per-text log-likelihood
difference and both perplexities.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from typing import Any

from absl import app, flags

from langshift.evaluation.run import evaluate_model_dir
from langshift.evaluation.tasks import (
    Suite,
    TaskSpec,
    load_examples,
    load_suite,
    resolve_suite_path,
)

# The model, suite, protocol, num_fewshot, max_examples, max_length and batch_size flags are the
# evaluation CLI's (langshift.evaluation.run).
_TASKS = flags.DEFINE_list("tasks", None, "Task names to compare (default: every comparable one).")
FLAGS = flags.FLAGS


def comparable_suite(suite: Suite, tasks: list[str] | None = None) -> Suite:
  """The suite's choice and perplexity tasks in the record layout, with first-n demonstrations."""
  keep = [
      dataclasses.replace(t, fewshot_sampler="first_n")
      for t in suite.tasks
      if t.type in ("choice", "perplexity")
      and t.format == "records"
      and not t.fewshot_path
      and (not tasks or t.name in tasks)
  ]
  return Suite(suite.name, tuple(keep))


def lm_eval_task(spec: TaskSpec, out_dir: str, num_fewshot: int) -> dict[str, Any]:
  """An lm-eval task config (a dict for `simple_evaluate`) over a JSON-lines copy of the task."""
  path = os.path.join(out_dir, f"{spec.name}.jsonl")
  with open(path, "w", encoding="utf-8") as f:
    for e in load_examples(spec):
      doc = (
          {"text": e.target}
          if spec.type == "perplexity"
          else {"prompt": e.prompt, "choices": list(e.choices), "gold": e.choices.index(e.target)}
      )
      f.write(json.dumps(doc, ensure_ascii=False) + "\n")
  common = dict(
      task=f"ls_{spec.name}",
      dataset_path="json",
      dataset_kwargs={"data_files": {"test": path}},
      test_split="test",
  )
  if spec.type == "perplexity":
    return dict(
        common,
        output_type="loglikelihood_rolling",
        doc_to_text="",
        doc_to_target="text",
        metric_list=[
            {"metric": m} for m in ("word_perplexity", "byte_perplexity", "bits_per_byte")
        ],
    )
  return dict(
      common,
      output_type="multiple_choice",
      fewshot_split="test",
      fewshot_config={"sampler": "first_n"},
      num_fewshot=num_fewshot,
      doc_to_text="prompt",
      doc_to_choice="choices",
      doc_to_target="gold",
      target_delimiter=spec.target_delimiter,
      fewshot_delimiter=spec.fewshot_delimiter,
      metric_list=[{"metric": "acc"}, {"metric": "acc_norm"}],
  )


def run_lm_eval(
    model_dir: str,
    suite: Suite,
    *,
    chat: bool,
    num_fewshot: int,
    batch_size: int = 8,
    max_length: int | None = None,
) -> dict[str, list[dict]]:
  """lm-eval's per-example records per task: `lls` (choice log-likelihoods) or `ll` (a text's)."""
  # pylint: disable=import-outside-toplevel
  os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
  os.environ.setdefault("HF_HUB_OFFLINE", "1")
  import lm_eval
  from lm_eval.models.huggingface import HFLM

  args = dict(pretrained=model_dir, device="cpu", batch_size=batch_size, dtype="float32")
  if max_length:
    args["max_length"] = max_length
  model = HFLM(**args)
  with tempfile.TemporaryDirectory() as tmp:
    configs = [lm_eval_task(t, tmp, num_fewshot) for t in suite.tasks]
    out = lm_eval.simple_evaluate(
        model=model,
        tasks=configs,
        num_fewshot=num_fewshot,
        apply_chat_template=chat,
        fewshot_as_multiturn=chat and num_fewshot > 0,
        log_samples=True,
        bootstrap_iters=0,
    )
  per_task = {}
  for spec in suite.tasks:
    records = sorted(out["samples"][f"ls_{spec.name}"], key=lambda r: r["doc_id"])
    if spec.type == "perplexity":
      per_task[spec.name] = [dict(ll=float(r["resps"][0][0])) for r in records]
    else:
      per_task[spec.name] = [
          dict(lls=[float(x[0][0]) for x in r["resps"]], prompt=r["arguments"][0][0])
          for r in records
      ]
  return per_task


def run_langshift(
    model_dir: str,
    suite: Suite,
    *,
    chat: bool,
    num_fewshot: int,
    batch_size: int = 8,
    max_length: int | None = None,
) -> tuple[dict[str, float], dict[str, list[dict]]]:
  """langshift's metrics and per-example records per task."""
  samples: list[dict] = []
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "suite.json")
    with open(path, "w", encoding="utf-8") as f:
      json.dump(
          {"name": suite.name, "tasks": [dataclasses.asdict(t) for t in suite.tasks]},
          f,
          ensure_ascii=False,
      )
    metrics = evaluate_model_dir(
        model_dir,
        path,
        protocol="instruct" if chat else "base",
        num_fewshot=num_fewshot,
        max_length=max_length,
        batch_size=batch_size,
        samples=samples,
    )
  per_task: dict[str, list[dict]] = {}
  for s in samples:
    per_task.setdefault(s["task"], []).append(s)
  return metrics, per_task


def compare(suite: Suite, ours: dict, theirs: dict) -> list[dict]:
  """Per task: examples, max |log-likelihood difference|, predictions that differ, accuracies."""
  rows = []
  for spec in suite.tasks:
    a, b = ours[spec.name], theirs[spec.name]
    if spec.type == "perplexity":
      diffs = [abs(x["loglikelihood"] - y["ll"]) for x, y in zip(a, b)]
      relative = [d / max(abs(y["ll"]), 1.0) for d, y in zip(diffs, b)]
      rows.append(
          dict(
              task=spec.name,
              n=len(a),
              max_abs_ll=max(diffs, default=0.0),
              max_rel_ll=max(relative, default=0.0),
              min_ll=min((y["ll"] for y in b), default=0.0),
          )
      )
      continue
    diffs, differ, acc_a, acc_b = [], 0, 0, 0
    for x, y in zip(a, b):
      diffs += [abs(p - q) for p, q in zip(x["loglikelihoods"], y["lls"])]
      pred_b = max(range(len(y["lls"])), key=lambda i: y["lls"][i])
      differ += x["pred"] != pred_b
      acc_a += x["pred"] == x["gold"]
      acc_b += pred_b == x["gold"]
    rows.append(
        dict(
            task=spec.name,
            n=len(a),
            max_abs_ll=max(diffs, default=0.0),
            preds_differ=differ,
            acc_langshift=acc_a / max(len(a), 1),
            acc_lm_eval=acc_b / max(len(b), 1),
        )
    )
  return rows


def main(argv):
  del argv
  suite = load_suite(resolve_suite_path(FLAGS.suite))
  if FLAGS.max_examples:
    suite = Suite(
        suite.name,
        tuple(dataclasses.replace(t, max_examples=FLAGS.max_examples) for t in suite.tasks),
    )
  suite = comparable_suite(suite, _TASKS.value)
  kwargs = dict(
      chat=FLAGS.protocol == "instruct",
      num_fewshot=FLAGS.num_fewshot or 0,
      batch_size=FLAGS.batch_size,
      max_length=FLAGS.max_length,
  )
  metrics, ours = run_langshift(FLAGS.model_dir, suite, **kwargs)
  theirs = run_lm_eval(FLAGS.model_dir, suite, **kwargs)
  for row in compare(suite, ours, theirs):
    print("\t".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
  for name in sorted(metrics):
    if "/settings/" in name or "ppl" in name or "accuracy" in name:
      print(f"{name}\t{metrics[name]:.4f}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["model_dir"])
  app.run(main)
