"""TMMLU+ (Tam et al. 2024, "An Improved Traditional Chinese Evaluation Suite for Foundation
Model", arXiv:2403.01858) as a langshift choice suite: the retention check of InsCP (Chen & Lee
2024, arXiv:2405.20175, Sec. 4.3) on Traditional Chinese knowledge.

The layout is the published one (the `ikala/tmmluplus` files): one CSV per subject and split,
`<subject>_test.csv` (evaluated) and `<subject>_dev.csv` (demonstrations; `_val` is not used),
columns `question`, `A`, `B`, `C`, `D`, `answer` (a letter). Any folder of such files works, so a
hand-made set in the same layout is evaluated the same way. `build_tmmluplus_suite` writes a
suite directory (one task per subject) that `harness.run_eval_suite` runs with whole-answer
log-likelihood choice scoring.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Sequence

from langshift.evaluation.benchmarks.tables import format_error, read_rows, text_field
from langshift.jsonl import write_jsonl

LABELS = ("A", "B", "C", "D")
# "The following is a multiple-choice question about {subject}; choose the correct answer."
HEADER = "以下是關於{subject}的單選題，請選出正確答案。"
QUESTION_WORD, ANSWER_WORD = "問題", "答案"


def render_prompt(subject: str, question: str, options: Sequence[str]) -> str:
  lines = [HEADER.format(subject=subject.replace("_", " ")), "", f"{QUESTION_WORD}：{question}"]
  lines += [f"{label}. {option}" for label, option in zip(LABELS, options)]
  lines.append(f"{ANSWER_WORD}：")
  return "\n".join(lines)


def read_subject(path: str, subject: str) -> list[dict]:
  """Choice records (prompt, choices, outputs) of one TMMLU+ CSV; bad rows are one-line errors
  naming the file and row."""
  records = []
  for where, row in read_rows(path):
    question = text_field(row, where, "question")
    options = [text_field(row, where, label) for label in LABELS]
    answer = text_field(row, where, "answer").upper()
    if answer not in LABELS:
      raise format_error(where, f"answer {answer!r} is not one of {LABELS}")
    records.append(
        {
            "prompt": render_prompt(subject, question, options),
            "choices": list(LABELS),
            "outputs": answer,
            "lang": "zh-TW",
        }
    )
  return records


def build_tmmluplus_suite(data_dir: str, out_dir: str, *, num_fewshot: int = 0) -> str:
  """Writes `<subject>.jsonl` (+ `.fewshot.jsonl`) and `suite.json` into `out_dir` from the
  `<subject>_test.csv` files of `data_dir`; returns the suite path."""
  tests = sorted(glob.glob(os.path.join(data_dir, "*_test.csv")))
  if not tests:
    raise FileNotFoundError(
        f"{data_dir}: no <subject>_test.csv files (the TMMLU+ layout: <subject>_test.csv, "
        "<subject>_dev.csv with columns question,A,B,C,D,answer)"
    )
  os.makedirs(out_dir, exist_ok=True)
  specs = []
  for path in tests:
    subject = os.path.basename(path)[: -len("_test.csv")]
    name = f"tmmluplus_{subject}"
    write_jsonl(os.path.join(out_dir, f"{name}.jsonl"), read_subject(path, subject))
    spec = {"name": name, "type": "choice", "path": f"{name}.jsonl", "language": "zh-TW"}
    spec["num_fewshot"] = num_fewshot
    dev = os.path.join(data_dir, f"{subject}_dev.csv")
    if os.path.exists(dev):
      write_jsonl(os.path.join(out_dir, f"{name}.fewshot.jsonl"), read_subject(dev, subject))
      spec["fewshot_path"] = f"{name}.fewshot.jsonl"
    specs.append(spec)
  path = os.path.join(out_dir, "suite.json")
  with open(path, "w", encoding="utf-8") as f:
    json.dump({"name": "tmmluplus", "tasks": specs}, f, ensure_ascii=False, indent=1)
  return path
