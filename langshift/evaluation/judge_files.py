"""Readers of the published LLM-judge file layouts, from local paths.

FastChat's `llm_judge` (Zheng et al. 2023, "Judging LLM-as-a-Judge with MT-Bench and Chatbot
Arena", arXiv:2306.05685):

- questions (`data/mt_bench/question.jsonl`): `question_id`, `category`, `turns` (the user's
  messages, two for MT-Bench), optionally `reference` (reference answers per turn);
- answers (`model_answer/<model>.jsonl`, `reference_answer/<judge>.jsonl`): `question_id`,
  `model_id`, `choices` of which the first one's `turns` are the answers;
- judge prompts (`data/judge_prompts.jsonl`): `name`, `type` (single / pairwise),
  `system_prompt`, `prompt_template` (with `{question}`, `{answer}`, `{ref_answer_1}`, ...
  placeholders) and `output_format` (`[[rating]]`, `[[A]]`).

Arena-Hard-Auto (Li et al. 2024, "From Crowdsourced Data to High-Quality Benchmarks: Arena-Hard
and BenchBuilder Pipeline", arXiv:2406.11939), both of its published layouts:

- questions: v0.1 `question_id`, `category`, `turns: [{"content": ...}]`; v2.0 `uid`,
  `category`, `prompt`;
- answers: v0.1 `question_id`, `model_id`, `choices[0].turns[0].content`; v2.0 `uid`, `model`,
  `messages`, the last one's `content.answer`.

A file in another layout is a one-line `BenchmarkFormatError` naming the file, the line and the
field, raised while reading, before any judging.
"""

from __future__ import annotations

import dataclasses
import os
import string
from collections.abc import Sequence
from typing import Any

from langshift.evaluation.benchmarks.tables import format_error, is_empty, read_rows


@dataclasses.dataclass(frozen=True)
class Question:
  id: str
  category: str
  turns: tuple[str, ...]  # the user's messages, in order
  reference: tuple[str, ...] = ()  # reference answers per turn (from the question file)


@dataclasses.dataclass(frozen=True)
class JudgePrompt:
  name: str
  type: str  # "single" | "pairwise"
  system_prompt: str
  prompt_template: str
  output_format: str

  @property
  def placeholders(self) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(self.prompt_template) if f}


def _id(where: str, row: dict, *names: str) -> str:
  for name in names:
    if name in row and not is_empty(row[name]):
      return str(row[name])
  raise format_error(
      where, f"missing field {names[0]!r}" + (f" (or {names[1]!r})" * (len(names) > 1))
  )


def _texts(where: str, value: Any, field: str) -> tuple[str, ...]:
  """A list of turns: strings, or {"content": string} objects (Arena-Hard v0.1)."""
  if not isinstance(value, list) or not value:
    raise format_error(where, f"field {field!r} is not a non-empty list of turns")
  out = []
  for turn in value:
    text = turn.get("content") if isinstance(turn, dict) else turn
    if not isinstance(text, str):
      raise format_error(where, f"field {field!r} holds {turn!r}, not text or {{'content': text}}")
    out.append(text)
  return tuple(out)


def _check_unique(path: str, ids: Sequence[str]) -> None:
  seen = set()
  for i in ids:
    if i in seen:
      raise format_error(path, f"question id {i!r} appears twice")
    seen.add(i)


def read_questions(path: str) -> list[Question]:
  """Questions in FastChat's or either Arena-Hard layout."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no question file")
  questions = []
  for where, row in read_rows(path):
    qid = _id(where, row, "question_id", "uid")
    if "turns" in row:
      turns = _texts(where, row["turns"], "turns")
    elif isinstance(row.get("prompt"), str) and row["prompt"].strip():
      turns = (row["prompt"],)
    else:
      raise format_error(
          where, "missing field 'turns' (FastChat, Arena-Hard v0.1) or 'prompt' (v2.0)"
      )
    reference = row.get("reference")
    questions.append(
        Question(
            id=qid,
            category=str(row.get("category") or ""),
            turns=turns,
            reference=_texts(where, reference, "reference") if reference else (),
        )
    )
  if not questions:
    raise format_error(path, "no questions")
  _check_unique(path, [q.id for q in questions])
  return questions


def _answer_turns(where: str, row: dict) -> tuple[str, ...]:
  if "choices" in row:
    choices = row["choices"]
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
      raise format_error(where, "field 'choices' is not a list of {'turns': [...]} objects")
    return _texts(where, choices[0].get("turns"), "choices[0].turns")
  if "messages" in row:
    messages = row["messages"]
    last = messages[-1] if isinstance(messages, list) and messages else None
    content = last.get("content") if isinstance(last, dict) else None
    answer = content.get("answer") if isinstance(content, dict) else content
    if not isinstance(answer, str):
      raise format_error(where, "field 'messages': the last message has no content.answer text")
    return (answer,)
  raise format_error(
      where, "missing field 'choices' (FastChat, Arena-Hard v0.1) or 'messages' (v2.0)"
  )


def read_answers(path: str) -> dict[str, tuple[str, ...]]:
  """{question id: answers per turn} of one model's (or reference) answer file."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no answer file")
  answers = {}
  for where, row in read_rows(path):
    answers[_id(where, row, "question_id", "uid")] = _answer_turns(where, row)
  if not answers:
    raise format_error(path, "no answers")
  return answers


def answers_for(
    path: str, answers: dict[str, tuple[str, ...]], questions: Sequence[Question], what: str
) -> list[tuple[str, ...]]:
  """Each question's answers, in question order, with as many turns as the question; a question
  without them is a one-line error naming the file (`what` says whose answers they are)."""
  out = []
  for q in questions:
    turns = answers.get(q.id)
    if turns is None:
      raise format_error(path, f"{what}: no answer to question {q.id!r}")
    if len(turns) < len(q.turns):
      raise format_error(
          path, f"{what}: question {q.id!r} has {len(q.turns)} turns, the answer {len(turns)}"
      )
    out.append(turns[: len(q.turns)])
  return out


PROMPT_FIELDS = ("name", "type", "system_prompt", "prompt_template", "output_format")


def read_judge_prompts(path: str, required: dict[str, set[str]]) -> dict[str, JudgePrompt]:
  """FastChat's judge prompt file; `required` maps each prompt name the protocol uses to the
  placeholders it fills. A missing prompt, field or an unknown placeholder is a one-line error."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no judge prompt file")
  prompts = {}
  for where, row in read_rows(path):
    for field in PROMPT_FIELDS:
      if not isinstance(row.get(field), str):
        raise format_error(where, f"missing text field {field!r} (FastChat judge prompt layout)")
    prompt = JudgePrompt(**{f: row[f] for f in PROMPT_FIELDS})
    if prompt.name in required:
      unknown = prompt.placeholders - required[prompt.name]
      if unknown:
        raise format_error(
            where,
            f"prompt {prompt.name!r} has placeholders {sorted(unknown)}; this protocol fills "
            f"{sorted(required[prompt.name])}",
        )
    prompts[prompt.name] = prompt
  missing = sorted(set(required) - set(prompts))
  if missing:
    raise format_error(path, f"no judge prompt named {missing} (FastChat's judge_prompts.jsonl)")
  return prompts
