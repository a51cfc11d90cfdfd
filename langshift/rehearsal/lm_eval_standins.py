"""Local stand-ins for the lm-eval tasks a published setting names: for each task name, a tiny
task YAML of that name over a JSON-lines file written next to it (`dataset_path: json`).

The rehearsal points the evaluation's `include_path` at the folder; lm-eval 0.4.13's
`TaskManager` lets a task found there take precedence over its own task (or group) of that name,
so the published task list runs unchanged, offline, on these files. The Open LLM suite's math
task generates (`generate_until` with a stop string, `exact_match`); every other task is
multiple choice (`acc`, `acc_norm`). Each file has enough documents for the suite's 25-shot ARC.
"""

from __future__ import annotations

import json
import os

from langshift.rehearsal import texts

GENERATE_UNTIL = frozenset({"gsm8k"})  # the published tasks whose answers are generated
DOCUMENTS = 30  # >= the most demonstrations a published task asks for (ARC, 25) plus one
MAX_GEN_TOKS = 16


def _names(tasks) -> list[str]:
  """Task names of `tasks` (a list or comma-separated string; `name:k` entries too)."""
  from langshift.evaluation.lm_eval_backend_evaluator import task_list  # pylint: disable=import-outside-toplevel

  return [t.partition(":")[0] for t in task_list(tasks)]


def _write_jsonl(path: str, rows) -> None:
  with open(path, "w", encoding="utf-8") as f:
    f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def write_task_standins(root: str, tasks, language: str = "en") -> str:
  """One stand-in task per name of `tasks` under `root`; returns `root` (the include_path)."""
  os.makedirs(root, exist_ok=True)
  sentences = texts.SENTENCES[language]
  for name in _names(tasks):
    data = os.path.join(root, f"{name}.jsonl")
    rows = []
    for i in range(DOCUMENTS):
      sentence = sentences[i % len(sentences)]
      if name in GENERATE_UNTIL:
        rows.append({"question": f"Question: {sentence} Answer:", "answer": f" {i % 10}"})
      else:
        rows.append(
            {
                "question": f"Question: {sentence} Answer:",
                "choices": [" yes", " no", " maybe", " later"],
                "gold": i % 4,
            }
        )
    _write_jsonl(data, rows)
    head = (
        f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    train: {data}\n    test: {data}\ntraining_split: train\ntest_split: test\n"
    )
    if name in GENERATE_UNTIL:
      body = (
          "output_type: generate_until\ndoc_to_text: question\ndoc_to_target: answer\n"
          f'generation_kwargs:\n  until: ["\\n", "Question:"]\n'
          f"  max_gen_toks: {MAX_GEN_TOKS}\n  do_sample: false\n"
          "metric_list:\n  - metric: exact_match\n"
      )
    else:
      body = (
          "output_type: multiple_choice\ndoc_to_text: question\ndoc_to_choice: choices\n"
          "doc_to_target: gold\nmetric_list:\n  - metric: acc\n  - metric: acc_norm\n"
      )
    with open(os.path.join(root, f"{name}.yaml"), "w", encoding="utf-8") as f:
      f.write(head + body)
  return root
