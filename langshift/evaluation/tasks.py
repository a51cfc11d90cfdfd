"""Evaluation task and suite definitions, read from local JSON/JSONL files.

A suite is a JSON file: {"name": ..., "tasks": [TaskSpec fields, ...]}; task `path`s are relative
to the suite's data folder (the suite file's own folder unless the suite or the caller names
another: `"data_dir"`, `load_suite(data_dir=...)`). Each task's examples are a JSONL file in the
langshift record layout (`format: "records"`, which also reads MERA-style `instruction` +
`inputs`), or a published benchmark file read by its own loader (`format: "darumeru"`, `"rucola"`,
`"mmlu"`, `"gazeta"`; see `darumeru.py`). The format is documented in
`langshift/evaluation/README.md`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

TASK_TYPES = ("choice", "generation", "perplexity")
# Choice scoring: "loglikelihood" of the whole answer continuation (lm-eval's multiple_choice);
# "first_token": the best next-token log-prob over the label's single-token spellings.
CHOICE_SCORING = ("loglikelihood", "first_token")
RECORD_FORMATS = ("records", "darumeru", "rucola", "mmlu", "gazeta")
# How demonstrations are drawn from the pool: seeded per example, or the pool's first n (in order,
# lm-eval's `first_n`; reversed, Darumeru's order, with the first record next to the query).
FEWSHOT_SAMPLERS = ("random", "first_n", "first_n_reversed")


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
  scoring: str = "loglikelihood"  # choice tasks: one of CHOICE_SCORING
  format: str = "records"  # the layout of `path` and `fewshot_path`: one of RECORD_FORMATS
  fewshot_sampler: str = "random"  # one of FEWSHOT_SAMPLERS
  # Published layouts: where the reference answer is ("outputs", or a dotted path such as
  # "inputs.text" for Darumeru's copy tasks).
  answer_field: str = "outputs"

  def __post_init__(self):
    for field, allowed in (
        ("type", TASK_TYPES),
        ("scoring", CHOICE_SCORING),
        ("format", RECORD_FORMATS),
        ("fewshot_sampler", FEWSHOT_SAMPLERS),
    ):
      if getattr(self, field) not in allowed:
        raise ValueError(
            f"task {self.name}: {field}={getattr(self, field)!r}; expected one of {allowed}"
        )
    if self.type == "generation":
      from langshift.evaluation import metrics  # pylint: disable=import-outside-toplevel

      known = (*metrics.GENERATION_METRICS, *metrics.TASK_METRICS, "language_alignment")
      if self.metric not in known:
        raise ValueError(f"task {self.name}: metric={self.metric!r}; expected one of {known}")


@dataclasses.dataclass(frozen=True)
class Example:
  prompt: str
  target: str = ""  # reference answer / gold choice label / text to score
  choices: tuple[str, ...] = ()
  language: str | None = None
  id: Any = None
  # Generation: every acceptable answer (metrics take the best); empty means (target,).
  references: tuple[str, ...] = ()
  # A conversation instead of a bare prompt (Darumeru's layout): ({"role", "content"}, ...) with
  # roles system / user / assistant. As a query it may end with an assistant turn that is the
  # start of the answer ("Ответ:"); as a demonstration the answer completes it (or, `answered`,
  # is already in it: Darumeru's prompt files).
  messages: tuple[dict, ...] | None = None
  answered: bool = False  # the conversation's last assistant turn already holds the answer
  meta: Any = None  # the record's `meta`, for task-level scores (USE)
  # Demonstrations come only from pool examples of the same group (an MMLU subject); None: any.
  group: str | None = None


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
  references = record.get("references") or ()
  return Example(
      prompt=prompt,
      target=str(target),
      choices=choices,
      language=record.get("lang", spec.language),
      id=record.get("id", meta.get("id")),
      references=tuple(str(r) for r in references),
      meta=meta or None,
  )


def read_records(path: str) -> list[dict]:
  """JSON lines; a malformed line is an error naming the file and the line."""
  records = []
  with open(path, encoding="utf-8") as f:
    for n, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path} line {n}: malformed JSON ({e.msg} at column {e.colno})") from None
      if not isinstance(record, dict):
        raise ValueError(f"{path} line {n}: expected a JSON object, got {type(record).__name__}")
      records.append(record)
  return records


def load_examples(spec: TaskSpec, path: str | None = None) -> list[Example]:
  """The task's examples (or, with `path`, those of another file of the same layout)."""
  path = path or spec.path
  if not os.path.exists(path):
    raise FileNotFoundError(f"task {spec.name}: no file {path}")
  if spec.format != "records":
    from langshift.evaluation import darumeru  # pylint: disable=import-outside-toplevel

    examples = darumeru.load_examples(spec, path)
  else:
    examples = []
    for n, record in enumerate(read_records(path), start=1):
      try:
        examples.append(example_from_record(record, spec))
      except (ValueError, KeyError, IndexError) as e:
        raise ValueError(f"{path} line {n}: {e}") from None
  return examples if spec.max_examples is None else examples[: spec.max_examples]


_TASK_FIELDS = {f.name for f in dataclasses.fields(TaskSpec)}


def load_suite(path: str, data_dir: str | None = None, **overrides) -> Suite:
  """Reads a suite JSON. Task paths resolve against `data_dir`, else the suite's own `"data_dir"`
  (relative to the suite file), else the suite file's folder. `overrides` apply to every task
  (e.g. max_examples=20 for a quick training-time check)."""
  with open(path, encoding="utf-8") as f:
    raw = json.load(f)
  here = os.path.dirname(os.path.abspath(path))
  root = data_dir or os.path.join(here, raw.get("data_dir") or "")
  if raw.get("requires_data_dir") and not data_dir:
    raise ValueError(
        f"suite {raw.get('name', path)!r} reads files you supply: give their folder as data_dir "
        f"(--data_dir, suite_eval(data_dir=...)); layout: {raw['requires_data_dir']}"
    )
  tasks = []
  for t in raw["tasks"]:
    unknown = sorted(set(t) - _TASK_FIELDS)
    if unknown:
      raise ValueError(f"{path}: task {t.get('name')!r} has unknown field(s) {unknown}")
    t = {**t, **overrides}
    for key in ("path", "fewshot_path"):
      if t.get(key):
        t[key] = os.path.join(root, t[key])
    for key in ("choices", "stop"):
      if key in t:
        t[key] = tuple(t[key])
    tasks.append(TaskSpec(**t))
  return Suite(name=raw.get("name", os.path.basename(here)), tasks=tuple(tasks))


BUILTIN_SUITES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "suites")
# Built-in suites that were renamed: the old name is an error that gives the new one.
RENAMED_SUITES = {"mini_darumeru": "handbook_mini"}


def resolve_suite_path(name_or_path: str) -> str:
  """A suite JSON path, or the name of a suite under langshift/evaluation/suites/."""
  if os.path.exists(name_or_path):
    return name_or_path
  builtin = os.path.join(BUILTIN_SUITES_DIR, name_or_path, "suite.json")
  if os.path.exists(builtin):
    return builtin
  if name_or_path in RENAMED_SUITES:
    raise FileNotFoundError(
        f"the built-in suite {name_or_path!r} is now {RENAMED_SUITES[name_or_path]!r} (it is built "
        "from the Debian handbook, not from Darumeru's tasks; those are the 'darumeru' suite)"
    )
  raise FileNotFoundError(f"no suite file {name_or_path!r} and no built-in suite of that name")
