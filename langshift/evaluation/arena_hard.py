"""Arena-Hard pairwise judging against a fixed baseline, as Li et al. 2024 run it ("From
Crowdsourced Data to High-Quality Benchmarks: Arena-Hard and BenchBuilder Pipeline",
arXiv:2406.11939, Sec. 4; Arena-Hard-Auto's `gen_judgment.py` / `show_result.py`).

Every question is judged twice, the baseline's answer as assistant A then the model's (game 1),
and the other way round (game 2), so position bias cancels. The judge, after answering the
question itself, gives one of five labels: `[[A>>B]]`, `[[A>B]]`, `[[A=B]]`, `[[B>A]]`,
`[[B>>A]]` (the last bracketed label in its answer, upper-cased, `[X]` as fallback). From the
model's side, a slight win is 1 battle won, a strong win 3 (Arena-Hard's weight for "significantly
better"), a tie half a battle each way; losses likewise. The win rate is 100 x the mean over all
battles of the judged questions: against one baseline it is what Arena-Hard's Bradley-Terry fit
gives (the baseline at 50). A game whose label cannot be parsed leaves its question out (as
Arena-Hard drops "null judgments") and is counted in `arena_hard/unparsed_games`.

  python -m langshift.evaluation.arena_hard --questions=data/arena-hard-v0.1/question.jsonl \
      --baseline=data/arena-hard-v0.1/model_answer/gpt-4-0314.jsonl \
      --answers=my-model.jsonl --judge_base_url=http://127.0.0.1:8000/v1 --judge_model=judge \
      --output_dir=/tmp/arena_hard

or, instead of `--answers`, `--model_backend=local --model_hf_dir=/ckpt/hf` (the model answers
greedily, Arena-Hard-Auto's setting). The judge prompt is Arena-Hard v0.1's unless `--judge_prompt`
names a JSON file with `system_prompt` and `prompt_template` (`{QUESTION}`, `{ANSWER_A}`,
`{ANSWER_B}`). Outputs as in `mt_bench`: `answers.jsonl`, `judgments.jsonl`, `metrics.json`.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import math
import os
import re
import sys
from collections.abc import Sequence

from langshift.evaluation import judge_files, judge_runs
from langshift.evaluation.judge_files import Question
from langshift.generation.interface import GenerationOptions, TextGenerator

# Battles a label is worth (Arena-Hard's `weight` for a "significantly better" verdict).
STRONG_WEIGHT = 3
ANSWER_MAX_NEW_TOKENS = 4096  # Arena-Hard-Auto's answer and judge budgets (max_tokens)
JUDGE_MAX_NEW_TOKENS = 4096
# Label -> (assistant A's score per battle, battles). Both spellings Arena-Hard accepts.
LABELS = {
    "A>>B": (1.0, STRONG_WEIGHT),
    "A>B": (1.0, 1),
    "A=B": (0.5, 1),
    "B=A": (0.5, 1),
    "B>A": (0.0, 1),
    "B>>A": (0.0, STRONG_WEIGHT),
    "A<B": (0.0, 1),
    "A<<B": (0.0, STRONG_WEIGHT),
    "B<A": (1.0, 1),
    "B<<A": (1.0, STRONG_WEIGHT),
}
_PATTERNS = (re.compile(r"\[\[([AB<>=]+)\]\]"), re.compile(r"\[([AB<>=]+)\]"))

# Arena-Hard v0.1's judge system prompt (arena-hard-auto, utils/judge_utils.py), verbatim: the
# judgments are only comparable with the published ones under the same prompt.
SYSTEM_PROMPT = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two "
    "AI assistants to the user prompt displayed below. You will be given assistant A's answer "
    "and assistant B's answer. Your job is to evaluate which assistant's answer is better.\n\n"
    "Begin your evaluation by generating your own answer to the prompt. You must provide your "
    "answers before judging any answers.\n\nWhen evaluating the assistants' answers, compare "
    "both assistants' answers with your answer. You must identify and correct any mistakes or "
    "inaccurate information.\n\nThen consider if the assistant's answers are helpful, relevant, "
    "and concise. Helpful means the answer correctly responds to the prompt or follows the "
    "instructions. Note when user prompt has any ambiguity or more than one interpretation, it "
    "is more helpful and appropriate to ask for clarifications or more information from the "
    "user than providing an answer based on assumptions. Relevant means all parts of the "
    "response closely connect or are appropriate to what is being asked. Concise means the "
    "response is clear and not verbose or excessive.\n\nThen consider the creativity and "
    "novelty of the assistant's answers when needed. Finally, identify any missing important "
    "information in the assistants' answers that would be beneficial to include when responding "
    "to the user prompt.\n\nAfter providing your explanation, you must output only one of the "
    "following choices as your final verdict with a label:\n\n1. Assistant A is significantly "
    "better: [[A>>B]]\n2. Assistant A is slightly better: [[A>B]]\n3. Tie, relatively the same: "
    "[[A=B]]\n4. Assistant B is slightly better: [[B>A]]\n5. Assistant B is significantly "
    'better: [[B>>A]]\n\nExample output: "My final verdict is tie: [[A=B]]".'
)
PROMPT_TEMPLATE = (
    "<|User Prompt|>\n{QUESTION}\n\n<|The Start of Assistant A's Answer|>\n{ANSWER_A}\n"
    "<|The End of Assistant A's Answer|>\n\n<|The Start of Assistant B's Answer|>\n{ANSWER_B}\n"
    "<|The End of Assistant B's Answer|>"
)
PLACEHOLDERS = {"QUESTION", "ANSWER_A", "ANSWER_B"}


def parse_label(text: str) -> str | None:
  """The last bracketed verdict label of a judgment (upper-cased; `[[X]]` before `[X]`), when it
  is one of `LABELS`; None otherwise."""
  upper = text.upper()
  for pattern in _PATTERNS:
    found = [m for m in pattern.findall(upper) if m]
    if found:
      return found[-1] if found[-1] in LABELS else None
  return None


def model_battles(game1: str, game2: str) -> list[float]:
  """The model's battle outcomes from game 1 (baseline as A) and game 2 (model as A)."""
  score2, n2 = LABELS[game2]
  score1, n1 = LABELS[game1]
  return [score2] * n2 + [1.0 - score1] * n1


@dataclasses.dataclass(frozen=True)
class QuestionResult:
  question_id: str
  category: str
  labels: tuple[str | None, str | None]  # game 1 (baseline as A), game 2 (model as A)
  judgments: tuple[str, str]

  @property
  def battles(self) -> list[float] | None:
    g1, g2 = self.labels
    return None if g1 is None or g2 is None else model_battles(g1, g2)


def _mean(values: Sequence[float]) -> float:
  return sum(values) / len(values) if values else math.nan


def summarize(results: Sequence[QuestionResult], prefix: str = "arena_hard") -> dict[str, float]:
  """Win rate (100 x mean battle outcome; the baseline is 50) over the judged questions, the same
  per category, the share of the model's games by outcome, and the unparsed counts."""
  judged = [r for r in results if r.battles is not None]
  battles = [b for r in judged for b in r.battles]
  metrics = {
      f"{prefix}/win_rate": 100.0 * _mean(battles),
      f"{prefix}/judged_questions": len(judged),
      f"{prefix}/unparsed_games": sum(label is None for r in results for label in r.labels),
  }
  # The model's side of each game: game 2 as labelled, game 1 mirrored.
  outcomes = collections.Counter()
  for r in judged:
    for label, mirrored in zip(r.labels, (True, False)):
      score, n = LABELS[label]
      score = 1.0 - score if mirrored else score
      kind = "tie" if score == 0.5 else ("win" if score == 1.0 else "loss")
      outcomes[f"{'strong_' if n > 1 else ''}{kind}"] += 1
  games = 2 * len(judged)
  for kind in ("strong_win", "win", "tie", "loss", "strong_loss"):
    metrics[f"{prefix}/{kind}_share"] = outcomes[kind] / games if games else math.nan
  by_category = collections.defaultdict(list)
  for r in judged:
    by_category[r.category].extend(r.battles)
  if len(by_category) > 1:
    for category, values in sorted(by_category.items()):
      metrics[f"{prefix}/category/{category}/win_rate"] = 100.0 * _mean(values)
  return metrics


def _conversation(system: str, template: str, question: str, a: str, b: str) -> list[dict]:
  return [
      {"role": "system", "content": system},
      {"role": "user", "content": template.format(QUESTION=question, ANSWER_A=a, ANSWER_B=b)},
  ]


def judge_against_baseline(
    questions: Sequence[Question],
    answers: Sequence[str],
    baseline: Sequence[str],
    judge: TextGenerator,
    *,
    judge_name: str,
    system_prompt: str = SYSTEM_PROMPT,
    prompt_template: str = PROMPT_TEMPLATE,
    max_new_tokens: int = JUDGE_MAX_NEW_TOKENS,
    batch_size: int = 8,
) -> list[QuestionResult]:
  """Both games of every question (game 1: baseline as A; game 2: the model as A), greedy."""
  n = len(questions)
  conversations = [
      _conversation(system_prompt, prompt_template, q.turns[0], base, ans)
      for q, ans, base in zip(questions, answers, baseline)
  ] + [
      _conversation(system_prompt, prompt_template, q.turns[0], ans, base)
      for q, ans, base in zip(questions, answers, baseline)
  ]
  texts, labels = judge_runs.run_judge(
      judge,
      conversations,
      GenerationOptions(max_new_tokens=max_new_tokens, temperature=0.0),
      parse_label,
      judge_name=judge_name,
      expected="verdict label ([[A>>B]], [[A>B]], [[A=B]], [[B>A]], [[B>>A]])",
      batch_size=batch_size,
  )
  return [
      QuestionResult(q.id, q.category, (labels[i], labels[n + i]), (texts[i], texts[n + i]))
      for i, q in enumerate(questions)
  ]


def read_judge_prompt(path: str) -> tuple[str, str]:
  """(system prompt, template) of a JSON file; a missing field or another placeholder is one line
  naming the file."""
  from langshift.evaluation.benchmarks.tables import format_error  # pylint: disable=import-outside-toplevel

  try:
    with open(path, encoding="utf-8") as f:
      record = json.load(f)
  except json.JSONDecodeError as e:
    raise format_error(f"{path} line {e.lineno}", f"malformed JSON ({e.msg})") from None
  fields = ("system_prompt", "prompt_template")
  if not isinstance(record, dict) or not all(isinstance(record.get(k), str) for k in fields):
    raise format_error(
        path, "expected a JSON object with text fields 'system_prompt', 'prompt_template'"
    )
  found = set(re.findall(r"{(\w+)}", record["prompt_template"]))
  if found != PLACEHOLDERS:
    raise format_error(
        path, f"prompt_template has placeholders {sorted(found)}; expected {sorted(PLACEHOLDERS)}"
    )
  return record["system_prompt"], record["prompt_template"]


@dataclasses.dataclass(frozen=True)
class Inputs:
  questions: list[Question]
  baseline: list[str]
  answers: list[str] | None  # None: the model answers
  system_prompt: str = SYSTEM_PROMPT
  prompt_template: str = PROMPT_TEMPLATE


def read_inputs(
    questions_path: str,
    baseline_path: str,
    answers_path: str | None = None,
    judge_prompt_path: str | None = None,
) -> Inputs:
  """Every file, read and checked (one-line errors naming the file) before anything runs."""
  questions = judge_files.read_questions(questions_path)

  def first_turn(path: str, what: str) -> list[str]:
    found = judge_files.answers_for(path, judge_files.read_answers(path), questions, what)
    return [turns[0] for turns in found]

  baseline = first_turn(baseline_path, "baseline answers")
  answers = first_turn(answers_path, "model answers") if answers_path else None
  prompts = read_judge_prompt(judge_prompt_path) if judge_prompt_path else ()
  return Inputs(questions, baseline, answers, *prompts)


def run(
    inputs: Inputs,
    *,
    judge: TextGenerator,
    judge_name: str,
    output_dir: str,
    model: TextGenerator | None = None,
    model_name: str = "model",
    answer_max_new_tokens: int = ANSWER_MAX_NEW_TOKENS,
    judge_max_new_tokens: int = JUDGE_MAX_NEW_TOKENS,
    judge_batch_size: int = 8,
) -> dict[str, float]:
  """Answers (unless `inputs` holds the answers), judges both games per question, writes the
  judgments and adds the metrics to `output_dir/metrics.json`; a judge error leaves it as it was."""
  questions, answers = inputs.questions, inputs.answers
  if answers is None:
    if model is None:
      raise ValueError("give the model's answers or a model to answer")
    greedy = GenerationOptions(max_new_tokens=answer_max_new_tokens, temperature=0.0)
    turns = judge_runs.answer_questions(model, questions, lambda q: greedy)
    path = os.path.join(output_dir, "answers.jsonl")
    judge_runs.write_answers(path, questions, turns, model_name)
    answers = [t[0] for t in turns]
  results = judge_against_baseline(
      questions,
      answers,
      inputs.baseline,
      judge,
      judge_name=judge_name,
      system_prompt=inputs.system_prompt,
      prompt_template=inputs.prompt_template,
      max_new_tokens=judge_max_new_tokens,
      batch_size=judge_batch_size,
  )
  judge_runs.write_jsonl(
      os.path.join(output_dir, "judgments.jsonl"),
      [
          dict(
              question_id=r.question_id,
              category=r.category,
              judge=judge_name,
              games=[
                  dict(answer_a="baseline", label=r.labels[0], judgment=r.judgments[0]),
                  dict(answer_a="model", label=r.labels[1], judgment=r.judgments[1]),
              ],
          )
          for r in results
      ],
  )
  metrics = summarize(results)
  judge_runs.merge_metrics(os.path.join(output_dir, "metrics.json"), metrics)
  return metrics


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m langshift.evaluation.arena_hard", description=__doc__.split("\n\n")[0]
  )
  parser.add_argument("--questions", required=True, help="Arena-Hard question.jsonl")
  parser.add_argument("--baseline", required=True, help="the baseline's answers")
  parser.add_argument("--answers", default="", help="the model's answers")
  parser.add_argument("--judge_prompt", default="", help="JSON: system_prompt, prompt_template")
  parser.add_argument("--output_dir", required=True)
  judge_runs.add_role_args(parser, "judge", "the judge", JUDGE_MAX_NEW_TOKENS)
  judge_runs.add_role_args(parser, "model", "the answering model", ANSWER_MAX_NEW_TOKENS)
  args = parser.parse_args(argv)
  return judge_runs.run_cli(
      "arena_hard",
      args,
      lambda: read_inputs(
          args.questions, args.baseline, args.answers or None, args.judge_prompt or None
      ),
      run,
  )


if __name__ == "__main__":
  sys.exit(main())
