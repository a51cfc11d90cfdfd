"""ArabicMMLU, EXAMS (Arabic), ACVA and AraTrust as langshift choice suites.

The native-alignment recipe (Liang et al. 2024, "Alignment at Pre-training! Towards Native
Alignment for Arabic LLMs", arXiv:2412.03253) reports its Arabic models on ArabicMMLU (Koto et al.
2024, arXiv:2402.12840), the Arabic questions of EXAMS (Hardalov et al. 2020, arXiv:2011.03080),
ACVA (Huang et al. 2023, AceGPT, arXiv:2309.12053) and AraTrust (Alghamdi et al. 2024,
arXiv:2403.09017). The loaders read local copies of the published files (CSV, JSON lines or the
Hugging Face Parquet conversions) and `build_arabic_suite` writes a suite directory that
`harness.run_eval_suite` runs (whole-answer log-likelihood choice scoring).

Every benchmark becomes one task per subject or category (an ArabicMMLU subject, an EXAMS subject,
an ACVA category, an AraTrust category), so few-shot demonstrations come from the same subject, as
in the benchmarks' own protocols; `benchmark_summary` adds the per-benchmark accuracy over all of
its questions. Prompts are rendered one fixed way, in Arabic, with lettered options; the answer
labels are the letters. Layouts and rendering are documented in langshift/evaluation/README.md
("Arabic benchmarks").
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from absl import logging

from langshift.evaluation.benchmarks.tables import (
    format_error,
    is_empty,
    list_tables,
    path_tokens,
    read_rows,
    text_field,
)
from langshift.jsonl import write_jsonl

ARABIC_LABELS = ("أ", "ب", "ج", "د", "هـ")
LATIN_LABELS = ("A", "B", "C", "D", "E")
LABEL_STYLES = {"arabic": ARABIC_LABELS, "latin": LATIN_LABELS}

# "The following is a multiple-choice question. Choose the correct answer."
MC_HEADER = "فيما يلي سؤال اختيار من متعدد. اختر الإجابة الصحيحة."
# "Determine whether the following statement is true or false."
TRUE_FALSE_HEADER = "حدد ما إذا كانت العبارة التالية صحيحة أم خاطئة."
QUESTION_WORD, STATEMENT_WORD, ANSWER_WORD = "السؤال", "العبارة", "الإجابة"
TRUE_WORD, FALSE_WORD = "صح", "خطأ"

BENCHMARKS = ("arabic_mmlu", "exams", "acva", "aratrust")
_SPLIT_WORDS = {"test", "dev", "validation", "val", "train"}
# ArabicMMLU `Level` codes, spelled as in the subject names of the published folders.
_LEVELS = {
    "Primary": "Primary School",
    "Middle": "Middle School",
    "High": "High School",
    "Univ": "University",
    "Prof": "Professional",
}
_LETTER_INDEX = {
    **{c: i for i, c in enumerate(LATIN_LABELS)},
    **{c: i for i, c in enumerate(ARABIC_LABELS)},
    "ا": 0,  # alif without hamza
    "ه": 4,  # heh without the tatweel
}
_TRUE = {TRUE_WORD, "صحيح", "true", "1"}
_FALSE = {FALSE_WORD, "خطا", "خاطئ", "false", "0"}

# Where a split is looked up in a directory: evaluation files, then the first few-shot split
# present (None: every table is evaluated and no split gives shots).
_SPLITS = {
    "arabic_mmlu": (("test",), ("dev",)),
    "exams": (("test",), ("dev", "validation", "train")),
    "acva": (("test",), ("validation", "dev")),
    "aratrust": (None, ()),
}

Source = str | tuple[str, str]  # a file or directory, or (evaluation path, few-shot path)


@dataclasses.dataclass(frozen=True)
class Question:
  """One multiple-choice item, before rendering."""

  question: str
  options: tuple[str, ...]
  gold: int  # index into options
  group: str  # subject or category: one task per group
  context: str = ""
  id: Any = None
  header: str = MC_HEADER
  question_word: str = QUESTION_WORD
  is_few_shot: bool = False  # ArabicMMLU's flag for its demonstration questions


@dataclasses.dataclass(frozen=True)
class BenchmarkTask:
  """One subject or category of a benchmark: evaluation records and few-shot pool, both in the
  langshift choice-record layout (prompt, choices, outputs, ...)."""

  name: str
  group: str
  records: tuple[dict, ...]
  fewshot: tuple[dict, ...] = ()


def render_prompt(question: Question, labels: Sequence[str]) -> str:
  """Header, optional context, the question, one "<letter>. <option>" line per option, and the
  answer cue; each letter is then scored by the log-likelihood of all its tokens after the
  prompt (the harness's `loglikelihood` scoring)."""
  lines = [question.header, ""]
  if question.context:
    lines += [question.context, ""]
  lines.append(f"{question.question_word}: {question.question}")
  lines += [f"{label}. {option}" for label, option in zip(labels, question.options)]
  lines.append(f"{ANSWER_WORD}:")
  return "\n".join(lines)


def to_record(question: Question, benchmark: str, labels: Sequence[str]) -> dict:
  choices = list(labels[: len(question.options)])
  return {
      "id": question.id,
      "prompt": render_prompt(question, choices),
      "choices": choices,
      "outputs": choices[question.gold],
      "lang": "ar",
      "meta": {"benchmark": benchmark, "group": question.group},
  }


def _answer_index(value: Any, where: str, field: str, num_options: int) -> int:
  key = str(value).strip()
  index = _LETTER_INDEX.get(key.upper() if key.isascii() else key)
  if index is None:
    raise format_error(where, f"field {field!r} is {key!r}; expected a letter A-E or أ-هـ")
  if index >= num_options:
    raise format_error(where, f"field {field!r} is {key!r} but the row has {num_options} options")
  return index


def _check_options(options: Sequence[str], where: str) -> None:
  if not 2 <= len(options) <= len(LATIN_LABELS):
    raise format_error(where, f"{len(options)} non-empty options; expected 2 to 5")


def _lettered(
    row: dict,
    where: str,
    columns: Sequence[str],
    key_fields: Sequence[str],
    strip: bool = False,
) -> tuple[tuple[str, ...], int]:
  """Options from the letter columns (A..E or Option 1..5) and the gold index.

  The first two columns are required; empty ones are dropped (questions with fewer options) and
  the letters close up. The key names the gold column by its letter.
  """
  for column in columns[:2]:
    text_field(row, where, column)
  key_field = next((k for k in key_fields if k in row), key_fields[0])
  key = text_field(row, where, *key_fields)
  gold = _answer_index(key, where, key_field, len(columns))
  if is_empty(row.get(columns[gold])):
    raise format_error(where, f"field {key_field!r} is {key!r} but {columns[gold]!r} is empty")
  kept = [i for i, c in enumerate(columns) if not is_empty(row.get(c))]
  options = [str(row[columns[i]]).strip() for i in kept]
  if strip:
    options = [_strip_letter(o, ARABIC_LABELS[i]) for o, i in zip(options, kept)]
  _check_options(options, where)
  return tuple(options), kept.index(gold)


# --- Per-benchmark row parsers: (where, row, folder group) -> Question, or None to skip. ---


def _arabic_mmlu_question(where: str, row: dict, folder: str | None) -> Question:
  """MBZUAI/ArabicMMLU: Question, Context, Option 1..5, Answer Key (A-E), Subject, Level, and in
  some versions is_few_shot. The arbml re-upload spells the options A..E and the key `answer`."""
  del folder  # subjects are named by the Subject and Level columns in every layout
  question = text_field(row, where, "Question")
  arbml = "Option 1" not in row and "A" in row
  columns = LATIN_LABELS if arbml else tuple(f"Option {i}" for i in range(1, 6))
  options, gold = _lettered(row, where, columns, ("Answer Key", "answer"))
  subject = text_field(row, where, "Subject")
  level = text_field(row, where, "Level", required=False)
  flag = str(row.get("is_few_shot", "")).strip().lower() in ("1", "true", "1.0")
  return Question(
      question=question,
      options=options,
      gold=gold,
      group=f"{subject} ({_LEVELS.get(level, level)})" if level else subject,
      context=text_field(row, where, "Context", required=False),
      id=row.get("ID", row.get("id")),
      is_few_shot=flag,
  )


def _exams_choices(where: str, choices: Any) -> tuple[list[str], list[str]]:
  """EXAMS-QA JSON lines list choices as [{"text", "label", "para"}, ...]; the Hugging Face
  conversion stores the same as {"text": [...], "label": [...], "para": [...]}."""
  if isinstance(choices, dict):
    texts, labels = choices.get("text"), choices.get("label")
  elif isinstance(choices, list) and all(isinstance(c, dict) for c in choices):
    texts, labels = [c.get("text") for c in choices], [c.get("label") for c in choices]
  else:
    texts = labels = None
  if not isinstance(texts, list) or not isinstance(labels, list) or len(texts) != len(labels):
    raise format_error(where, "field 'question.choices' is not a list of {text, label} choices")
  if any(is_empty(t) for t in texts):
    raise format_error(where, "field 'question.choices' has an empty choice text")
  return [str(t).strip() for t in texts], [str(lab).strip() for lab in labels]


def _exams_question(
    where: str, row: dict, folder: str | None, language: str = "Arabic"
) -> Question | None:
  """EXAMS-QA (mhardalov/exams, multilingual): id, question {stem, choices}, answerKey,
  info {grade, subject, language}; only `language` rows are kept. Flat Arabic-only conversions
  (OALL/Arabic_EXAMS, AceGPT's EXAMS_Arabic): question, A..D, answer (letter), subject."""
  del folder
  if isinstance(row.get("question"), dict):
    info = row.get("info") or {}
    if language and str(info.get("language", language)).lower() != language.lower():
      return None
    stem = text_field(row["question"], where, "stem")
    if "choices" not in row["question"]:
      raise format_error(where, "missing field 'question.choices'")
    texts, labels = _exams_choices(where, row["question"]["choices"])
    key = text_field(row, where, "answerKey")
    if key == "@":  # published items without a gold answer
      return None
    if key not in labels:
      raise format_error(where, f"field 'answerKey' is {key!r}, not one of the labels {labels}")
    _check_options(texts, where)
    return Question(
        question=stem,
        options=tuple(texts),
        gold=labels.index(key),
        group=str(info.get("subject") or "all"),
        id=row.get("id"),
    )
  question = text_field(row, where, "question")
  options, gold = _lettered(row, where, LATIN_LABELS, ("answer",))
  return Question(
      question=question,
      options=options,
      gold=gold,
      group=text_field(row, where, "subject", required=False).replace("_", " ") or "all",
      id=row.get("id"),
  )


def _true_false(value: Any, where: str) -> bool:
  if isinstance(value, bool) or value in (0, 1):  # class labels: 0 = خطأ, 1 = صح
    return bool(value)
  key = str(value).strip().lower()
  if key in _TRUE:
    return True
  if key in _FALSE:
    return False
  raise format_error(where, f"field 'answer' is {key!r}; expected {TRUE_WORD} or {FALSE_WORD}")


def _acva_question(where: str, row: dict, folder: str | None) -> Question:
  """OALL/ACVA: one folder per category with id, question (a statement), answer (صح / خطأ); the
  arbml re-upload stores answer as a class label (0 = خطأ, 1 = صح)."""
  statement = text_field(row, where, "question")
  if is_empty(row.get("answer")):
    raise format_error(where, "missing field 'answer'")
  truth = _true_false(row["answer"], where)
  group = folder or text_field(row, where, "category", "Category", required=False) or "all"
  return Question(
      question=statement,
      options=(TRUE_WORD, FALSE_WORD),
      gold=0 if truth else 1,
      group=group,
      id=row.get("id"),
      header=TRUE_FALSE_HEADER,
      question_word=STATEMENT_WORD,
  )


def _strip_letter(option: str, letter: str) -> str:
  """AraTrust options carry their own letter ("أ) ..."); it is dropped so every benchmark is
  lettered the same way. Only the option's own letter followed by punctuation is removed."""
  return re.sub(rf"^\(?\s*{re.escape(letter)}\s*[).:\-–]\s*", "", option).strip()


def _aratrust_question(where: str, row: dict, folder: str | None) -> Question:
  """asas-ai/AraTrust (and its per-category split AraTrust-categorized): Question, A, B, C,
  Answer (an Arabic letter), and a category column or folder."""
  question = text_field(row, where, "Question", "question")
  options, gold = _lettered(row, where, LATIN_LABELS, ("Answer", "answer"), strip=True)
  group = folder or text_field(row, where, "Category", "category", required=False) or "all"
  return Question(
      question=question,
      options=options,
      gold=gold,
      group=group,
      id=row.get("ID", row.get("id")),
  )


_PARSERS: dict[str, Callable[[str, dict, str | None], Question | None]] = {
    "arabic_mmlu": _arabic_mmlu_question,
    "exams": _exams_question,
    "acva": _acva_question,
    "aratrust": _aratrust_question,
}


# --- Finding the files of a source and grouping its questions into tasks. ---


def _tables(benchmark: str, path: str) -> tuple[str, list[str]]:
  if os.path.isdir(path):
    files = list_tables(path)
    if not files:
      raise FileNotFoundError(f"{benchmark}: no .csv/.jsonl/.json/.parquet files under {path}")
    return path, files
  if os.path.isfile(path):
    return os.path.dirname(path), [path]
  raise FileNotFoundError(f"{benchmark}: no such file or directory: {path}")


def split_files(benchmark: str, source: Source) -> tuple[str, list[str], str, list[str]]:
  """(root, evaluation files, few-shot root, few-shot files) of a source.

  A file is the evaluation split (no few-shot split). A directory is searched recursively: files
  whose path names the evaluation split ("test.csv", "test-00000-of-00001.parquet",
  "Algeria/test/0000.parquet") are evaluated, and the first few-shot split present gives shots.
  A (evaluation, few-shot) pair names both explicitly.
  """
  if isinstance(source, (tuple, list)):
    root, files = _tables(benchmark, source[0])
    shots_root, shots = _tables(benchmark, source[1])
    return root, files, shots_root, shots
  root, files = _tables(benchmark, source)
  eval_splits, shot_splits = _SPLITS[benchmark]
  if os.path.isfile(source) or eval_splits is None:
    return root, files, root, []
  evaluated = [f for f in files if path_tokens(f, root) & set(eval_splits)]
  if not evaluated:
    raise FileNotFoundError(f"{benchmark}: no {'/'.join(eval_splits)} split files under {root}")
  for split in shot_splits:
    shots = [f for f in files if split in path_tokens(f, root)]
    if shots:
      return root, evaluated, root, shots
  return root, evaluated, root, []


def _folder_group(path: str, root: str) -> str | None:
  """The first folder below the root (ACVA and AraTrust-categorized keep one per category),
  unless it is a split or a plain data folder."""
  rel = os.path.relpath(os.path.dirname(path), root)
  first = rel.split(os.sep)[0]
  return None if rel == "." or first.lower() in _SPLIT_WORDS | {"data"} else first


def read_questions(benchmark: str, root: str, files: Sequence[str]) -> list[Question]:
  parse = _PARSERS[benchmark]
  questions, skipped = [], 0
  for path in files:
    folder = _folder_group(path, root)
    for where, row in read_rows(path):
      question = parse(where, row, folder)
      if question is None:
        skipped += 1
      else:
        questions.append(question)
  if skipped:
    logging.info("%s: skipped %d rows (other languages or no gold answer)", benchmark, skipped)
  return questions


def task_slug(group: str) -> str:
  """Task-name form of a subject: lower case, word characters joined by "_" (Arabic kept)."""
  return re.sub(r"\W+", "_", group).strip("_").lower() or "all"


def load_benchmark(
    benchmark: str, source: Source, *, label_style: str = "arabic"
) -> list[BenchmarkTask]:
  """One `BenchmarkTask` per subject / category of `benchmark` (one of BENCHMARKS), in name order.

  Few-shot pools come from the benchmark's few-shot split (same subject); ArabicMMLU questions
  flagged `is_few_shot` are never evaluated and form the pool when there is no dev split. A
  subject without a pool gets its demonstrations from its other evaluation questions.
  """
  if benchmark not in _PARSERS:
    raise ValueError(f"unknown benchmark {benchmark!r}; expected one of {BENCHMARKS}")
  if label_style not in LABEL_STYLES:
    raise ValueError(f"label_style={label_style!r}; expected one of {tuple(LABEL_STYLES)}")
  labels = LABEL_STYLES[label_style]
  root, files, shots_root, shot_files = split_files(benchmark, source)
  evaluated = read_questions(benchmark, root, files)
  pool = read_questions(benchmark, shots_root, shot_files)
  flagged = [q for q in evaluated if q.is_few_shot]
  evaluated = [q for q in evaluated if not q.is_few_shot]
  if not shot_files:
    pool = flagged
  if not evaluated:
    raise ValueError(f"{benchmark}: no questions to evaluate in {source}")
  tasks, names = [], set()
  for group in sorted({q.group for q in evaluated}):
    name = base = f"{benchmark}_{task_slug(group)}"
    suffix = 2
    while name in names:  # two subjects that differ only in punctuation
      name, suffix = f"{base}_{suffix}", suffix + 1
    names.add(name)
    tasks.append(
        BenchmarkTask(
            name=name,
            group=group,
            records=tuple(to_record(q, benchmark, labels) for q in evaluated if q.group == group),
            fewshot=tuple(to_record(q, benchmark, labels) for q in pool if q.group == group),
        )
    )
  return tasks


def load_arabic_mmlu(source: Source, *, label_style: str = "arabic") -> list[BenchmarkTask]:
  """MBZUAI/ArabicMMLU: the repository directory ("<Subject>/dev.csv", "<Subject>/test.csv", or
  its "All" folder, which is then used alone), a single test file, or (test, dev) paths."""
  if isinstance(source, str) and os.path.isdir(os.path.join(source, "All")):
    source = os.path.join(source, "All")  # the per-subject folders hold the same questions
  return load_benchmark("arabic_mmlu", source, label_style=label_style)


def load_exams(source: Source, *, label_style: str = "arabic") -> list[BenchmarkTask]:
  """EXAMS, Arabic questions only: EXAMS-QA multilingual JSON lines (any language mix) or a flat
  Arabic conversion; shots from dev, validation or train."""
  return load_benchmark("exams", source, label_style=label_style)


def load_acva(source: Source, *, label_style: str = "arabic") -> list[BenchmarkTask]:
  """OALL/ACVA ("<Category>/test-*.parquet", "<Category>/validation-*.parquet") or one file."""
  return load_benchmark("acva", source, label_style=label_style)


def load_aratrust(source: Source, *, label_style: str = "arabic") -> list[BenchmarkTask]:
  """asas-ai/AraTrust (one split) or AraTrust-categorized ("<Category>/train-*.parquet")."""
  return load_benchmark("aratrust", source, label_style=label_style)


_LOADERS = {
    "arabic_mmlu": load_arabic_mmlu,
    "exams": load_exams,
    "acva": load_acva,
    "aratrust": load_aratrust,
}


# --- Writing and summarising the suite. ---


def write_suite(
    out_dir: str,
    tasks: Mapping[str, Sequence[BenchmarkTask]],
    *,
    num_fewshot: int | Mapping[str, int] = 5,
    name: str = "arabic_benchmarks",
) -> str:
  """Writes `<task>.jsonl`, `<task>.fewshot.jsonl`, `suite.json` and `benchmarks.json` (task
  sizes per benchmark, for `benchmark_summary`) into `out_dir`; returns the suite path."""
  os.makedirs(out_dir, exist_ok=True)
  specs, sizes = [], {}
  for benchmark, benchmark_tasks in tasks.items():
    shots = num_fewshot if isinstance(num_fewshot, int) else num_fewshot.get(benchmark, 0)
    sizes[benchmark] = {}
    for task in benchmark_tasks:
      write_jsonl(os.path.join(out_dir, f"{task.name}.jsonl"), task.records)
      spec = {"name": task.name, "type": "choice", "path": f"{task.name}.jsonl"}
      spec.update(num_fewshot=shots, language="ar")
      if task.fewshot:
        write_jsonl(os.path.join(out_dir, f"{task.name}.fewshot.jsonl"), task.fewshot)
        spec["fewshot_path"] = f"{task.name}.fewshot.jsonl"
      specs.append(spec)
      sizes[benchmark][task.name] = len(task.records)
  with open(os.path.join(out_dir, "benchmarks.json"), "w", encoding="utf-8") as f:
    json.dump(sizes, f, ensure_ascii=False, indent=1)
  path = os.path.join(out_dir, "suite.json")
  with open(path, "w", encoding="utf-8") as f:
    json.dump({"name": name, "tasks": specs}, f, ensure_ascii=False, indent=1)
  return path


def build_arabic_suite(
    out_dir: str,
    *,
    arabic_mmlu: Source | None = None,
    exams: Source | None = None,
    acva: Source | None = None,
    aratrust: Source | None = None,
    num_fewshot: int | Mapping[str, int] = 5,
    label_style: str = "arabic",
    name: str = "arabic_benchmarks",
) -> str:
  """Converts the given benchmarks (local paths; see the loaders) into a suite in `out_dir`.

  Returns the suite.json path for `run_eval_suite` / `evaluate_arabic_suite` / the eval CLI.
  `num_fewshot` is one count for all benchmarks or a {benchmark: count} mapping (missing: 0).
  """
  sources = {"arabic_mmlu": arabic_mmlu, "exams": exams, "acva": acva, "aratrust": aratrust}
  tasks = {
      benchmark: _LOADERS[benchmark](source, label_style=label_style)
      for benchmark, source in sources.items()
      if source is not None
  }
  if not tasks:
    raise ValueError(f"build_arabic_suite: no benchmark given (any of {BENCHMARKS})")
  return write_suite(out_dir, tasks, num_fewshot=num_fewshot, name=name)


def benchmark_summary(
    metrics: Mapping[str, float],
    suite_path: str,
    *,
    prefix: str = "eval",
    max_examples: int | None = None,
) -> dict[str, float]:
  """Per-benchmark scores from per-task accuracies of a suite written by `write_suite`.

  `<prefix>/<benchmark>/accuracy` is the accuracy over all of the benchmark's questions (tasks
  weighted by their size, as the benchmarks report it); `<prefix>/<benchmark>/subject_avg` the
  unweighted mean over subjects; `<prefix>/benchmark_avg` the mean of the benchmark accuracies.
  Pass the `max_examples` the suite ran with so the weights match the questions scored.
  """
  with open(os.path.join(os.path.dirname(suite_path), "benchmarks.json"), encoding="utf-8") as f:
    sizes = json.load(f)
  out = {}
  for benchmark, tasks in sizes.items():
    scored = {t: n for t, n in tasks.items() if f"{prefix}/{t}/accuracy" in metrics}
    if not scored:
      continue
    weights = {t: n if max_examples is None else min(n, max_examples) for t, n in scored.items()}
    accuracies = {t: metrics[f"{prefix}/{t}/accuracy"] for t in scored}
    total = sum(weights.values())
    out[f"{prefix}/{benchmark}/accuracy"] = sum(accuracies[t] * weights[t] for t in scored) / total
    out[f"{prefix}/{benchmark}/subject_avg"] = sum(accuracies.values()) / len(accuracies)
  overall = [v for k, v in out.items() if k.endswith("/accuracy")]
  if overall:
    out[f"{prefix}/benchmark_avg"] = sum(overall) / len(overall)
  return out


def evaluate_arabic_suite(suite_path: str, **kwargs) -> dict[str, float]:
  """`run_eval_suite` on a suite from `build_arabic_suite`, plus `benchmark_summary`."""
  from langshift.evaluation.harness import run_eval_suite  # pylint: disable=import-outside-toplevel

  results = run_eval_suite(suite_path, **kwargs)
  results.update(
      benchmark_summary(
          results,
          suite_path,
          prefix=kwargs.get("prefix", "eval"),
          max_examples=kwargs.get("max_examples"),
      )
  )
  return results
