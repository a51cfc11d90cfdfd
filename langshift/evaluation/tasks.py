"""Evaluation task and suite definitions, read from local JSON/JSONL files.

A suite is a JSON file: {"name": ..., "tasks": [TaskSpec fields, ...]}; task `path`s are relative
to the suite file. Each task's examples are a JSONL file in the MERA/Darumeru layout, so those
files (and ArabicMMLU or MMLU converted to it) drop in unchanged. The format is documented in
`langshift/evaluation/README.md`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

TASK_TYPES = ("choice", "generation", "perplexity")


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  name: str
  type: str  # "choice" | "generation" | "perplexity"
  path: str
  # Generation metric (a key of metrics.GENERATION_METRICS or "language_alignment"); choice tasks
  # report accuracy, perplexity tasks ppl.
  metric: str = "accuracy"
  language: str | None = None  # default `lang` of the records
  num_fewshot: int = 0  # shots for base models; instruct models are evaluated zero-shot
  fewshot_path: str | None = None  # shots come from here, else from the other records
  choices: tuple[str, ...] = ()  # answer labels shared by every record (else per record)
  max_new_tokens: int = 64
  # Base-model few-shot layout: shots joined by `fewshot_delimiter`, answers after
  # `target_delimiter`; generation stops at `stop` strings.
  target_delimiter: str = " "
  fewshot_delimiter: str = "\n\n"
  stop: tuple[str, ...] = ("\n\n",)
  max_examples: int | None = None
  in_average: bool = True  # counts towards eval/micro_avg (perplexity never does)

  def __post_init__(self):
    if self.type not in TASK_TYPES:
      raise ValueError(f"task {self.name}: type={self.type!r}; expected one of {TASK_TYPES}")


@dataclasses.dataclass(frozen=True)
class Example:
  prompt: str
  target: str = ""  # reference answer / gold choice label / text to score
  choices: tuple[str, ...] = ()
  language: str | None = None
  id: Any = None


@dataclasses.dataclass(frozen=True)
class Suite:
  name: str
  tasks: tuple[TaskSpec, ...]


def _fill(instruction: str, inputs) -> str:
  if isinstance(inputs, dict):
    return instruction.format(**inputs)
  return instruction.format(inputs=inputs) if "{inputs}" in instruction else instruction


def example_from_record(record: dict, spec: TaskSpec) -> Example:
  """One JSONL record -> Example (see README.md for the accepted fields)."""
  if "prompt" in record:
    prompt = record["prompt"]
  elif "instruction" in record:
    prompt = _fill(record["instruction"], record.get("inputs", ""))
  elif spec.type == "perplexity":
    prompt = ""
  else:
    raise ValueError(f"task {spec.name}: record has neither 'prompt' nor 'instruction': {record}")
  choices = tuple(record.get("choices") or spec.choices)
  target = record.get("outputs", record.get("answer", record.get("text", "")))
  if spec.type == "choice":
    if isinstance(target, int) and not isinstance(target, bool):
      target = choices[target]  # an index into the choice labels
    target = str(target)
    if target not in choices:
      raise ValueError(f"task {spec.name}: gold {target!r} is not among choices {choices}")
  meta = record.get("meta") or {}
  return Example(
      prompt=prompt,
      target=str(target),
      choices=choices,
      language=record.get("lang", spec.language),
      id=record.get("id", meta.get("id")),
  )


def read_jsonl(path: str) -> list[dict]:
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def load_examples(spec: TaskSpec, path: str | None = None) -> list[Example]:
  records = read_jsonl(path or spec.path)
  if spec.max_examples is not None:
    records = records[: spec.max_examples]
  return [example_from_record(r, spec) for r in records]


def load_suite(path: str, **overrides) -> Suite:
  """Reads a suite JSON; task paths resolve against its folder. `overrides` apply to every task
  (e.g. max_examples=20 for a quick training-time check)."""
  with open(path, encoding="utf-8") as f:
    raw = json.load(f)
  root = os.path.dirname(os.path.abspath(path))
  tasks = []
  for t in raw["tasks"]:
    t = {**t, **overrides}
    for key in ("path", "fewshot_path"):
      if t.get(key):
        t[key] = os.path.join(root, t[key])
    for key in ("choices", "stop"):
      if key in t:
        t[key] = tuple(t[key])
    tasks.append(TaskSpec(**t))
  return Suite(name=raw.get("name", os.path.basename(root)), tasks=tuple(tasks))


BUILTIN_SUITES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "suites")


def resolve_suite_path(name_or_path: str) -> str:
  """A suite JSON path, or the name of a suite under langshift/evaluation/suites/."""
  if os.path.exists(name_or_path):
    return name_or_path
  builtin = os.path.join(BUILTIN_SUITES_DIR, name_or_path, "suite.json")
  if os.path.exists(builtin):
    return builtin
  raise FileNotFoundError(f"no suite file {name_or_path!r} and no built-in suite of that name")
