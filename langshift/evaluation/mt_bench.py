"""MT-Bench single-answer grading as Zheng et al. 2023 run it ("Judging LLM-as-a-Judge with
MT-Bench and Chatbot Arena", arXiv:2306.05685, Sec. 3.1 and App. A; FastChat's `llm_judge`).

Every question has two user turns; the model answers the second after its own first answer. The
judge grades each turn on 1-10 with FastChat's prompts, read from its `judge_prompts.jsonl`:

- turn 1: `single-v1`, or `single-math-v1` with the reference answer for the categories graded
  against one (math, reasoning, coding);
- turn 2: `single-v1-multi-turn` / `single-math-v1-multi-turn`, the whole two-turn conversation
  (and both reference answers), grading the second answer.

The rating is the first `[[r]]` in the judge's answer (else the first `[r]`, FastChat's fallback).
A judgment without one, or with a rating outside 1-10, is unparsed: counted
(`mt_bench/unparsed`) and never scored. Scores are means over the parsed judgments: per turn,
overall (both turns together, FastChat's "Average") and per category. Answers are sampled at
FastChat's per-category temperatures (0.7 writing and roleplay, 0.1 STEM and humanities, greedy
otherwise; 0.7 for categories it does not list) unless `greedy`.

  python -m langshift.evaluation.mt_bench --questions=data/mt_bench/question.jsonl \
      --judge_prompts=data/judge_prompts.jsonl \
      --references=data/mt_bench/reference_answer/gpt-4.jsonl \
      --answers=data/mt_bench/model_answer/my-model.jsonl \
      --judge_base_url=http://127.0.0.1:8000/v1 --judge_model=judge --output_dir=/tmp/mt_bench

or, instead of `--answers`, the model answers first: `--model_backend=local
--model_hf_dir=/ckpt/hf` (or `--model_base_url=...`). The output folder gets `answers.jsonl` (the
model's, FastChat's layout), `judgments.jsonl` and `metrics.json` (added to what is there).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import math
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

from langshift.evaluation import judge_files, judge_runs
from langshift.evaluation.judge_files import Question
from langshift.generation.interface import GenerationOptions, TextGenerator

# Categories graded against a reference answer (FastChat's NEED_REF_CATS, less its Arena-Hard-200).
NEEDS_REFERENCE = ("math", "reasoning", "coding")
# Sampling temperature of the answering model per category (FastChat's temperature_config).
CATEGORY_TEMPERATURE = {
    "writing": 0.7,
    "roleplay": 0.7,
    "extraction": 0.0,
    "math": 0.0,
    "coding": 0.0,
    "reasoning": 0.0,
    "stem": 0.1,
    "humanities": 0.1,
}
DEFAULT_TEMPERATURE = 0.7
# New tokens of an answer turn (FastChat's --max-new-token) and of a judgment (its GPT-4 judge's).
ANSWER_MAX_NEW_TOKENS = 1024
JUDGE_MAX_NEW_TOKENS = 2048
RATING_RANGE = (1.0, 10.0)

# Prompt name -> the placeholders this protocol fills.
_Q1, _A1 = {"question"}, {"answer"}
_TURNS = {"question_1", "question_2", "answer_1", "answer_2"}
PROMPTS = {
    "single-v1": _Q1 | _A1,
    "single-math-v1": _Q1 | _A1 | {"ref_answer_1"},
    "single-v1-multi-turn": _TURNS,
    "single-math-v1-multi-turn": _TURNS | {"ref_answer_1", "ref_answer_2"},
}

_RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_RATING_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")


def parse_rating(text: str) -> float | None:
  """The first `[[r]]` (else `[r]`) in a judgment, when 1 <= r <= 10; None otherwise."""
  match = _RATING.search(text) or _RATING_BACKUP.search(text)
  if not match:
    return None
  rating = float(match.group(1))
  return rating if RATING_RANGE[0] <= rating <= RATING_RANGE[1] else None


def needs_reference(question: Question) -> bool:
  return question.category in NEEDS_REFERENCE


def references_for(
    questions: Sequence[Question], references_path: str | None
) -> list[tuple[str, ...]]:
  """Reference answers of the questions graded against one: from the reference answer file
  (FastChat's `reference_answer/<judge>.jsonl`), else from the questions' own `reference`."""
  graded = [q for q in questions if needs_reference(q)]
  if references_path:
    answers = judge_files.read_answers(references_path)
    found = judge_files.answers_for(references_path, answers, graded, "reference answers")
    by_id = {q.id: r for q, r in zip(graded, found)}
  else:
    by_id = {}
    for q in graded:
      if len(q.reference) < len(q.turns):
        raise ValueError(
            f"question {q.id!r} ({q.category}) is graded against a reference answer: give "
            "--references (FastChat's reference_answer/<judge>.jsonl) or a 'reference' per turn"
        )
      by_id[q.id] = q.reference
  return [by_id.get(q.id, ()) for q in questions]


@dataclasses.dataclass(frozen=True)
class Judgment:
  question_id: str
  category: str
  turn: int  # 1 or 2
  prompt: str  # the judge prompt's name
  judgment: str
  rating: float | None  # None: unparsed


def judge_requests(
    questions: Sequence[Question],
    answers: Sequence[Sequence[str]],
    references: Sequence[Sequence[str]],
    prompts: dict[str, judge_files.JudgePrompt],
) -> list[tuple[Question, int, judge_files.JudgePrompt, list[dict]]]:
  """(question, turn, prompt, judge conversation) for every turn of every question."""
  out = []
  for q, a, ref in zip(questions, answers, references):
    math_like = needs_reference(q)
    single = prompts["single-math-v1" if math_like else "single-v1"]
    fields: dict[str, Any] = dict(question=q.turns[0], answer=a[0])
    if math_like:
      fields["ref_answer_1"] = ref[0]
    out.append((q, 1, single, _conversation(single, fields)))
    if len(q.turns) >= 2:
      multi = prompts["single-math-v1-multi-turn" if math_like else "single-v1-multi-turn"]
      fields = dict(question_1=q.turns[0], question_2=q.turns[1], answer_1=a[0], answer_2=a[1])
      if math_like:
        fields.update(ref_answer_1=ref[0], ref_answer_2=ref[1])
      out.append((q, 2, multi, _conversation(multi, fields)))
  return out


def _conversation(prompt: judge_files.JudgePrompt, fields: dict) -> list[dict]:
  return [
      {"role": "system", "content": prompt.system_prompt},
      {"role": "user", "content": prompt.prompt_template.format(**fields)},
  ]


def _mean(values: Sequence[float]) -> float:
  return sum(values) / len(values) if values else math.nan


def summarize(judgments: Sequence[Judgment], prefix: str = "mt_bench") -> dict[str, float]:
  """Means over the parsed judgments (per turn, overall, per category) and the counts."""
  rated = [j for j in judgments if j.rating is not None]
  metrics = {
      f"{prefix}/score": _mean([j.rating for j in rated]),
      f"{prefix}/turn1": _mean([j.rating for j in rated if j.turn == 1]),
      f"{prefix}/turn2": _mean([j.rating for j in rated if j.turn == 2]),
      f"{prefix}/judged": len(rated),
      f"{prefix}/unparsed": len(judgments) - len(rated),
  }
  by_category: dict[str, list[float]] = collections.defaultdict(list)
  for j in rated:
    by_category[j.category].append(j.rating)
  for category, ratings in sorted(by_category.items()):
    metrics[f"{prefix}/category/{category}"] = _mean(ratings)
  return metrics


def grade(
    questions: Sequence[Question],
    answers: Sequence[Sequence[str]],
    judge: TextGenerator,
    prompts: dict[str, judge_files.JudgePrompt],
    references: Sequence[Sequence[str]],
    *,
    judge_name: str,
    max_new_tokens: int = JUDGE_MAX_NEW_TOKENS,
    batch_size: int = 8,
) -> list[Judgment]:
  """Single-answer grading of every turn; the judge is greedy."""
  requests = judge_requests(questions, answers, references, prompts)
  texts, ratings = judge_runs.run_judge(
      judge,
      [conversation for *_, conversation in requests],
      GenerationOptions(max_new_tokens=max_new_tokens, temperature=0.0),
      parse_rating,
      judge_name=judge_name,
      expected="[[rating]] on 1-10",
      batch_size=batch_size,
  )
  return [
      Judgment(q.id, q.category, turn, prompt.name, text, rating)
      for (q, turn, prompt, _), text, rating in zip(requests, texts, ratings)
  ]


def answer_options(max_new_tokens: int, greedy: bool, seed: int = 0):
  def options_for(q: Question) -> GenerationOptions:
    t = 0.0 if greedy else CATEGORY_TEMPERATURE.get(q.category, DEFAULT_TEMPERATURE)
    return GenerationOptions(max_new_tokens=max_new_tokens, temperature=t, seed=seed)

  return options_for


@dataclasses.dataclass(frozen=True)
class Inputs:
  questions: list[Question]
  prompts: dict[str, judge_files.JudgePrompt]
  references: list[tuple[str, ...]]
  answers: list[tuple[str, ...]] | None  # None: the model answers


def read_inputs(
    questions_path: str,
    judge_prompts_path: str,
    references_path: str | None = None,
    answers_path: str | None = None,
) -> Inputs:
  """Every file, read and checked (one-line errors naming the file) before anything runs."""
  questions = judge_files.read_questions(questions_path)
  prompts = judge_files.read_judge_prompts(judge_prompts_path, PROMPTS)
  references = references_for(questions, references_path)
  answers = None
  if answers_path:
    answers = judge_files.answers_for(
        answers_path, judge_files.read_answers(answers_path), questions, "model answers"
    )
  return Inputs(questions, prompts, references, answers)


def run(
    inputs: Inputs,
    *,
    judge: TextGenerator,
    judge_name: str,
    output_dir: str,
    model: TextGenerator | None = None,
    model_name: str = "model",
    greedy: bool = False,
    answer_max_new_tokens: int = ANSWER_MAX_NEW_TOKENS,
    judge_max_new_tokens: int = JUDGE_MAX_NEW_TOKENS,
    judge_batch_size: int = 8,
    seed: int = 0,
) -> dict[str, float]:
  """Answers (unless `inputs` holds the answers), grades, writes the judgments and adds the
  metrics to `output_dir/metrics.json`; a judge error leaves that file as it was."""
  questions, answers = inputs.questions, inputs.answers
  if answers is None:
    if model is None:
      raise ValueError("give the model's answers or a model to answer")
    answers = judge_runs.answer_questions(
        model, questions, answer_options(answer_max_new_tokens, greedy, seed)
    )
    path = os.path.join(output_dir, "answers.jsonl")
    judge_runs.write_answers(path, questions, answers, model_name)
  judgments = grade(
      questions,
      answers,
      judge,
      inputs.prompts,
      inputs.references,
      judge_name=judge_name,
      max_new_tokens=judge_max_new_tokens,
      batch_size=judge_batch_size,
  )
  judge_runs.write_jsonl(
      os.path.join(output_dir, "judgments.jsonl"),
      [dict(dataclasses.asdict(j), judge=judge_name) for j in judgments],
  )
  metrics = summarize(judgments)
  judge_runs.merge_metrics(os.path.join(output_dir, "metrics.json"), metrics)
  return metrics


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m langshift.evaluation.mt_bench", description=__doc__.split("\n\n")[0]
  )
  parser.add_argument("--questions", required=True, help="FastChat question.jsonl")
  parser.add_argument("--judge_prompts", required=True, help="FastChat judge_prompts.jsonl")
  parser.add_argument("--references", default="", help="reference_answer/<judge>.jsonl")
  parser.add_argument("--answers", default="", help="the model's answers (FastChat layout)")
  parser.add_argument("--output_dir", required=True)
  parser.add_argument("--greedy", action="store_true", help="answer greedily in every category")
  parser.add_argument("--seed", type=int, default=0)
  judge_runs.add_role_args(parser, "judge", "the judge", JUDGE_MAX_NEW_TOKENS)
  judge_runs.add_role_args(parser, "model", "the answering model", ANSWER_MAX_NEW_TOKENS)
  args = parser.parse_args(argv)
  return judge_runs.run_cli(
      "mt_bench",
      args,
      lambda: read_inputs(
          args.questions, args.judge_prompts, args.references or None, args.answers or None
      ),
      run,
      greedy=args.greedy,
      seed=args.seed,
  )


if __name__ == "__main__":
  sys.exit(main())
