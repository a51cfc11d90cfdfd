"""Tiny files in FastChat's and Arena-Hard's layouts, and fake judges that answer by known rules."""

from __future__ import annotations

import json
import os
import re

# Short prompts of our own in FastChat's judge-prompt layout: the names and placeholders are
# FastChat's, the wording is not (the tests only need where each field lands).
JUDGE_PROMPTS = [
    dict(
        name="single-v1",
        type="single",
        system_prompt="You are a helpful assistant.",
        prompt_template="Rate 1-10 as [[rating]].\nQ: {question}\nANSWER: {answer}",
        output_format="[[rating]]",
    ),
    dict(
        name="single-math-v1",
        type="single",
        system_prompt="You are a helpful assistant.",
        prompt_template="Rate 1-10 as [[rating]].\nQ: {question}\nREF: {ref_answer_1}\n"
        "ANSWER: {answer}",
        output_format="[[rating]]",
    ),
    dict(
        name="single-v1-multi-turn",
        type="single",
        system_prompt="Grade the second answer; reply [[rating]].",
        prompt_template="Q1: {question_1}\nA1: {answer_1}\nQ2: {question_2}\nA2: {answer_2}",
        output_format="[[rating]]",
    ),
    dict(
        name="single-math-v1-multi-turn",
        type="single",
        system_prompt="Grade the second answer against the references; reply [[rating]].",
        prompt_template="Q1: {question_1}\nREF1: {ref_answer_1}\nQ2: {question_2}\n"
        "REF2: {ref_answer_2}\nA1: {answer_1}\nA2: {answer_2}",
        output_format="[[rating]]",
    ),
    dict(
        name="pair-v2",
        type="pairwise",
        system_prompt="unused here",
        prompt_template="{question} {answer_a} {answer_b}",
        output_format="[[A]]",
    ),
]


def write_jsonl(path: str, records) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
  return path


def fastchat_answer(qid, turns, model="m"):
  return {"question_id": qid, "model_id": model, "choices": [{"index": 0, "turns": list(turns)}]}


_MARK = re.compile(r"score=(\d+)|garbled")


class RatingJudge:
  """Rates the last "score=N" of the graded text (the answer comes last in every prompt above);
  when the last mark is "garbled" it answers without a rating. Records every request."""

  def __init__(self):
    self.requests = []

  def chat(self, conversations, options):
    self.requests.append((list(conversations), options))
    out = []
    for conversation in conversations:
      marks = list(_MARK.finditer(conversation[-1]["content"]))
      last = marks[-1] if marks else None
      if last is None or last.group(1) is None:
        out.append("The answer cannot be rated.")
      else:
        out.append(f"A short explanation. Rating: [[{last.group(1)}]]")
    return out


class SilentJudge:
  """A judge that never answers in the protocol's format."""

  def __init__(self):
    self.calls = 0

  def chat(self, conversations, options):
    del options
    self.calls += 1
    return ["I think both are fine."] * len(conversations)
