"""Loaders for the task files of the Darumeru benchmark in their published layouts.

Darumeru (Tikhomirov & Chernyshev 2024, "Facilitating large language model Russian adaptation
with Learned Embedding Propagation", arXiv:2412.21140) evaluates Russian adaptation on MERA tasks
(Fenogenova et al. 2024, arXiv:2401.04531) rewritten as conversations, Darumeru's own copy tasks,
RuCoLA (Mikhailov et al. 2022, arXiv:2210.12814), MMLU in Russian and English (Hendrycks et al.
2021, arXiv:2009.03300; NLP Core Team's translation) and Gazeta summarisation (Gusev 2020,
arXiv:2006.11063). Nothing is downloaded: every loader reads local copies (`suites/darumeru`
names the layout it expects under `--data_dir`).

Formats (`TaskSpec.format`):

- `darumeru`: the Darumeru dataset's `data/<task>/test.jsonl` and `prompt.jsonl` (MultiQ, PARus,
  RCB, ruMMLU, ruOpenBookQA, ruWorldTree, RWSD, USE, cp_sent_*, cp_para_*): each record has
  `messages` (roles system / user / bot, `{field}` placeholders filled from `inputs`), `inputs`,
  `outputs` (a label, a text, or MultiQ's list of `{"segment": ...}` answers) and `meta`. A test
  record's trailing bot turn ("Ответ:") opens the answer; a prompt record's holds the answer.
- `rucola`: RuCoLA tables (`sentence` and `acceptable` or `label`, 0 / 1), CSV or Parquet.
- `mmlu`: NLP Core Team's MMLU (`question_ru` / `choices_ru` or `question_en` / `choices_en`,
  `answer` as 0-3 or A-D, `subject` or the subject's folder); `path` may be a folder, of which the
  tables whose path names the split (`test` for the task, `dev` for its demonstrations) are read.
  The task's `language` ("ru" / "en") picks the fields.
- `gazeta`: Gazeta JSON lines (`title`, `text`, `summary`), or Darumeru's filtered DaruSum
  records (`src_sents`, `summary_sents`: the sentences, joined by spaces). Rows that carry
  `summary_support` are filtered as the paper filters Gazeta
  (`darumeru_published.keep_gazeta_row`).

Bad input is a one-line error naming the file, the line or row, and the field.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from langshift.evaluation.benchmarks.tables import (
    format_error,
    is_empty,
    list_tables,
    path_tokens,
    read_rows,
    text_field,
)
from langshift.evaluation.tasks import Example, TaskSpec

ROLES = {"system": "system", "user": "user", "bot": "assistant", "assistant": "assistant"}
MMLU_LETTERS = ("A", "B", "C", "D")

# Prompts of the tasks whose published files are plain tables (ours; Darumeru's own files carry
# their prompts). Russian for the Russian tasks, as Darumeru's prompts are.
RUCOLA_INSTRUCTION = (
    "Определи, является ли предложение допустимым в русском языке с точки зрения синтаксиса, "
    "морфологии и смысла. Ответь одной цифрой: 1 — допустимо, 0 — недопустимо.\n"
    "Предложение: {sentence}"
)
GAZETA_INSTRUCTION = "Кратко, в 2–3 предложениях, изложи суть новости.\n\n{title}\n{text}"
ANSWER_WORD = {"ru": "Ответ:", "en": "Answer:"}
SUMMARY_WORD = "Краткое содержание:"
MMLU_HEADER = {
    "ru": "Ниже приведены вопросы с выбором ответа по теме «{subject}».",
    "en": "The following are multiple choice questions (with answers) about {subject}.",
}


def _fill(where: str, content: Any, inputs: Any) -> str:
  if not isinstance(content, str):
    raise format_error(where, f"message content is {type(content).__name__}, expected text")
  try:
    return content.format(**inputs) if isinstance(inputs, dict) else content
  except (KeyError, IndexError, ValueError) as e:
    raise format_error(where, f"message placeholder {e} is not filled by 'inputs'") from None


def _messages(where: str, record: dict) -> tuple[dict, ...]:
  raw = record.get("messages")
  if not isinstance(raw, list) or not raw:
    raise format_error(where, "field 'messages' is missing or not a list of turns")
  inputs = record.get("inputs") or {}
  out = []
  for turn in raw:
    role = ROLES.get(turn.get("role")) if isinstance(turn, dict) else None
    if role is None:
      raise format_error(where, f"message role {turn!r} is not one of {sorted(ROLES)}")
    out.append({"role": role, "content": _fill(where, turn.get("content"), inputs)})
  return tuple(out)


def _lookup(record: dict, dotted: str) -> Any:
  value: Any = record
  for key in dotted.split("."):
    value = value.get(key) if isinstance(value, dict) else None
  return value


def _choice_target(where: str, value: Any, choices: tuple[str, ...], field: str) -> str:
  """The gold label: the value itself, or the one label it starts with ("Да." for "Да")."""
  text = str(value).strip()
  if text in choices:
    return text
  starts = [c for c in choices if text.startswith(c)]
  if len(starts) != 1:
    raise format_error(where, f"field {field!r} is {text!r}, not one of the labels {choices}")
  return starts[0]


def darumeru_example(where: str, record: dict, spec: TaskSpec) -> Example:
  messages = _messages(where, record)
  answer = _lookup(record, spec.answer_field)
  references: tuple[str, ...] = ()
  if isinstance(answer, list):  # MultiQ: every annotated answer span
    references = tuple(
        str(a.get("segment") if isinstance(a, dict) else a).strip() for a in answer if a
    )
    answer = references[0] if references else None
  if is_empty(answer):
    raise format_error(where, f"field {spec.answer_field!r} is missing or empty")
  target = str(answer)
  if spec.type == "choice":
    target = _choice_target(where, answer, spec.choices, spec.answer_field)
  meta = record.get("meta") or {}
  text = "\n\n".join(m["content"] for m in messages if m["role"] != "system")
  return Example(
      prompt=text,
      target=target,
      choices=spec.choices,
      language=spec.language,
      id=meta.get("id") if isinstance(meta, dict) else None,
      references=references,
      messages=messages,
      meta=meta or None,
  )


def _binary_label(where: str, row: dict) -> str:
  for field in ("acceptable", "label"):
    if field in row and not is_empty(row[field]):
      value = str(row[field]).strip()
      if value in ("0", "1", "True", "False"):
        return "1" if value in ("1", "True") else "0"
      raise format_error(where, f"field {field!r} is {value!r}, expected 0 or 1")
  raise format_error(where, "missing field 'acceptable' (or 'label')")


def rucola_example(where: str, row: dict, spec: TaskSpec) -> Example:
  sentence = text_field(row, where, "sentence")
  word = ANSWER_WORD["ru"]
  return Example(
      prompt=RUCOLA_INSTRUCTION.format(sentence=sentence) + "\n\n" + word,
      target=_binary_label(where, row),
      choices=spec.choices or ("0", "1"),
      language="ru",
      id=row.get("id"),
      messages=(
          {"role": "user", "content": RUCOLA_INSTRUCTION.format(sentence=sentence)},
          {"role": "assistant", "content": word},
      ),
  )


def _mmlu_answer(where: str, value: Any) -> str:
  text = str(value).strip()
  if text in MMLU_LETTERS:
    return text
  if text.isdigit() and int(text) < len(MMLU_LETTERS):
    return MMLU_LETTERS[int(text)]
  raise format_error(where, f"field 'answer' is {text!r}, expected 0-3 or A-D")


def mmlu_example(where: str, row: dict, spec: TaskSpec, folder_subject: str | None) -> Example:
  lang = spec.language or "ru"
  if lang not in ANSWER_WORD:
    raise format_error(where, f"task {spec.name}: language={lang!r}; MMLU files have ru and en")
  question = text_field(row, where, f"question_{lang}")
  options = row.get(f"choices_{lang}")
  if not isinstance(options, (list, tuple)) or len(options) != len(MMLU_LETTERS):
    raise format_error(where, f"field 'choices_{lang}' is not a list of {len(MMLU_LETTERS)}")
  subject = str(row.get("subject") or folder_subject or "").strip()
  if not subject:
    raise format_error(where, "no 'subject' field and no subject folder")
  body = "\n".join([question] + [f"{x}. {str(o).strip()}" for x, o in zip(MMLU_LETTERS, options)])
  header = MMLU_HEADER[lang].format(subject=subject.replace("_", " "))
  answer = _mmlu_answer(where, row.get("answer"))
  return Example(
      prompt=body + "\n" + ANSWER_WORD[lang],
      target=answer,
      choices=MMLU_LETTERS,
      language=lang,
      id=row.get("id"),
      messages=(
          {"role": "system", "content": header},
          {"role": "user", "content": body},
          {"role": "assistant", "content": ANSWER_WORD[lang]},
      ),
      group=subject,
  )


def _sentences(where: str, row: dict, field: str) -> str:
  value = row.get(field)
  if not isinstance(value, list) or not value or not all(isinstance(s, str) for s in value):
    raise format_error(where, f"field {field!r} is not a list of sentences")
  return " ".join(s.strip() for s in value)


def gazeta_example(where: str, row: dict, spec: TaskSpec) -> Example:
  del spec
  if "src_sents" in row:  # Darumeru's DaruSum layout
    text, summary = _sentences(where, row, "src_sents"), _sentences(where, row, "summary_sents")
  else:
    text, summary = text_field(row, where, "text"), text_field(row, where, "summary")
  user = GAZETA_INSTRUCTION.format(title=text_field(row, where, "title", required=False), text=text)
  return Example(
      prompt=user + "\n\n" + SUMMARY_WORD,
      target=summary,
      language="ru",
      id=row.get("url"),
      messages=(
          {"role": "user", "content": user},
          {"role": "assistant", "content": SUMMARY_WORD},
      ),
  )


def _holds_answer(example: Example) -> bool:
  last = example.messages[-1]
  return last["role"] == "assistant" and last["content"].rstrip().endswith(example.target.strip())


def _table_files(path: str, split: str) -> list[tuple[str, str | None]]:
  """(file, subject folder) pairs: the file itself, or a folder's tables that name the split."""
  if not os.path.isdir(path):
    return [(path, None)]
  files = [f for f in list_tables(path) if split in path_tokens(f, path)]
  if not files:
    raise format_error(path, f"no table file whose path names the {split!r} split")
  return [
      (f, os.path.basename(os.path.dirname(f)) if os.path.dirname(f) != path else None)
      for f in files
  ]


def load_examples(spec: TaskSpec, path: str) -> list[Example]:
  """Examples of `path` in `spec.format`. When `path` is the task's `fewshot_path` they are
  demonstrations: an MMLU folder gives its dev split, and Darumeru's prompt records already hold
  their answers."""
  shots = path == spec.fewshot_path and path != spec.path
  if spec.format == "darumeru":
    if spec.type == "choice" and not spec.choices:
      raise ValueError(f"task {spec.name}: Darumeru choice tasks need the suite's 'choices'")
    examples = [darumeru_example(where, row, spec) for where, row in read_rows(path)]
    # A prompt record's bot turn normally ends with its answer; one that does not gets it added.
    return [
        dataclasses.replace(e, answered=True) if shots and _holds_answer(e) else e for e in examples
    ]
  if spec.format == "mmlu":
    examples = [
        mmlu_example(where, row, spec, subject)
        for file, subject in _table_files(path, "dev" if shots else "test")
        for where, row in read_rows(file)
    ]
  elif spec.format == "rucola":
    examples = [rucola_example(where, row, spec) for where, row in read_rows(path)]
  elif spec.format == "gazeta":
    from langshift.evaluation.darumeru_published import keep_gazeta_row  # pylint: disable=import-outside-toplevel

    examples = [
        gazeta_example(where, row, spec)
        for where, row in read_rows(path)
        if keep_gazeta_row(where, row)
    ]
  else:
    raise ValueError(f"task {spec.name}: format={spec.format!r} has no loader here")
  return examples
