"""Tiny files in FastChat's `llm_judge` and Arena-Hard-Auto's layouts, for a rehearsal's MT-Bench
and Arena-Hard (`langshift/evaluation/judge_files.py` reads them as it reads the published ones).

  mt_bench/question.jsonl                 two questions of two turns; one math (graded against
                                          a reference answer)
  mt_bench/reference_answer/gpt-4.jsonl   the math question's reference answers
  judge_prompts.jsonl                     FastChat's four single-answer prompt names and
                                          placeholders, short wording of our own; like FastChat's,
                                          the multi-turn ones ask for "[[rating]]" in the system
                                          prompt
  arena_hard/question.jsonl               two questions (v0.1 layout)
  arena_hard/model_answer/gpt-4-0314.jsonl  the fixed baseline's answers
"""

from __future__ import annotations

import json
import os

from langshift.rehearsal import texts

_SYSTEM = "You are a fair judge. Rate the answer from 1 to 10 as [[rating]]."
JUDGE_PROMPTS = [
    dict(
        name="single-v1",
        type="single",
        system_prompt=_SYSTEM,
        prompt_template="[Question]\n{question}\n[Answer]\n{answer}",
        output_format="[[rating]]",
    ),
    dict(
        name="single-math-v1",
        type="single",
        system_prompt=_SYSTEM,
        prompt_template="[Question]\n{question}\n[Reference]\n{ref_answer_1}\n[Answer]\n{answer}",
        output_format="[[rating]]",
    ),
    dict(
        name="single-v1-multi-turn",
        type="single",
        system_prompt=_SYSTEM + " Grade the second answer.",
        prompt_template="Q1: {question_1}\nA1: {answer_1}\nQ2: {question_2}\nA2: {answer_2}",
        output_format="[[rating]]",
    ),
    dict(
        name="single-math-v1-multi-turn",
        type="single",
        system_prompt=_SYSTEM + " Grade the second answer against the references.",
        prompt_template="Q1: {question_1}\nR1: {ref_answer_1}\nA1: {answer_1}\n"
        "Q2: {question_2}\nR2: {ref_answer_2}\nA2: {answer_2}",
        output_format="[[rating]]",
    ),
]


def _jsonl(path: str, rows) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
  return path


def write_mt_bench_files(root: str, language: str = "en") -> dict[str, str]:
  """{"questions", "judge_prompts", "references"}: the files' paths under `root`."""
  s = texts.SENTENCES[language]
  questions = [
      {"question_id": 81, "category": "writing", "turns": [s[0], s[1]]},
      {"question_id": 111, "category": "math", "turns": ["2 + 2 = ?", "3 + 3 = ?"]},
  ]
  references = [
      {"question_id": 111, "model_id": "gpt-4", "choices": [{"index": 0, "turns": ["4", "6"]}]}
  ]
  return dict(
      questions=_jsonl(os.path.join(root, "mt_bench", "question.jsonl"), questions),
      judge_prompts=_jsonl(os.path.join(root, "judge_prompts.jsonl"), JUDGE_PROMPTS),
      references=_jsonl(
          os.path.join(root, "mt_bench", "reference_answer", "gpt-4.jsonl"), references
      ),
  )


def write_arena_hard_files(root: str, language: str = "en") -> dict[str, str]:
  """{"questions", "baseline"}: the files' paths under `root`."""
  ids, prompts = ["q1", "q2"], texts.SENTENCES[language][:2]
  questions = [
      {"question_id": i, "category": "arena-hard-v0.1", "cluster": "c", "turns": [{"content": t}]}
      for i, t in zip(ids, prompts)
  ]
  # The baseline restates the question: a short answer of known length.
  baseline = [
      {
          "question_id": i,
          "model_id": "gpt-4-0314",
          "choices": [{"index": 0, "turns": [{"content": t, "token_len": len(t.split())}]}],
      }
      for i, t in zip(ids, prompts)
  ]
  return dict(
      questions=_jsonl(os.path.join(root, "arena_hard", "question.jsonl"), questions),
      baseline=_jsonl(
          os.path.join(root, "arena_hard", "model_answer", "gpt-4-0314.jsonl"), baseline
      ),
  )
