import math

import pytest

from langshift.evaluation.judge import (
    FIRST,
    JUDGE_MAX_NEW_TOKENS,
    SECOND,
    TIE,
    judge_pairs,
    llm_judge,
    pair_score,
    parse_verdict,
)


def test_pair_score_table():
  assert pair_score(FIRST, SECOND) == 1.0  # A picked in both orders
  assert pair_score(SECOND, FIRST) == 0.0  # B picked in both orders
  assert pair_score(FIRST, FIRST) == 0.5  # position bias: picks differ
  assert pair_score(SECOND, SECOND) == 0.5
  assert pair_score(TIE, SECOND) == 0.5  # a declared tie in one order
  # An unparsed verdict is not a tie: the pair is left out of the score (it used to count 0.5,
  # which pulled a judge that never answered towards parity).
  assert pair_score(None, SECOND) is None and pair_score(FIRST, None) is None


def test_judge_pairs_arithmetic_with_a_scripted_judge():
  # Pairs: A better in both orders; B better in both; judge always says "first"; A better.
  verdicts = {
      ("q1", "a1", "b1"): FIRST,
      ("q1", "b1", "a1"): SECOND,
      ("q2", "a2", "b2"): SECOND,
      ("q2", "b2", "a2"): FIRST,
      ("q3", "a3", "b3"): FIRST,
      ("q3", "b3", "a3"): FIRST,
      ("q4", "a4", "b4"): FIRST,
      ("q4", "b4", "a4"): SECOND,
  }
  calls = []

  def judge(triples):
    calls.append(len(triples))
    return [verdicts[t] for t in triples]

  result = judge_pairs(
      judge, ["q1", "q2", "q3", "q4"], ["a1", "a2", "a3", "a4"], ["b1", "b2", "b3", "b4"]
  )
  assert result.scores == (1.0, 0.0, 0.5, 1.0)
  assert result.score == pytest.approx(100 * 2.5 / 4)
  m = result.metrics("judge/ar")
  assert m["judge/ar/win_rate"] == 0.5 and m["judge/ar/tie_rate"] == 0.25
  assert m["judge/ar/loss_rate"] == 0.25
  assert m["judge/ar/unparsed_verdicts"] == 0 and m["judge/ar/judged_pairs"] == 4
  assert calls == [8]  # one batched call covering both orders


def test_llm_judge_parses_the_generators_verdicts():
  class PrefersLonger:

    def chat(self, conversations, options):
      out = []
      for (msg,) in conversations:
        text = msg["content"]
        first = text.split("[The Start of Assistant A's Answer]\n")[1].split("\n[The End")[0]
        second = text.split("[The Start of Assistant B's Answer]\n")[1].split("\n[The End")[0]
        out.append("Reasoning... [[A]]" if len(first) > len(second) else "Verdict: [[B]]")
      return out

  result = judge_pairs(
      llm_judge(PrefersLonger()), ["q", "q"], ["long answer", "x"], ["short", "much longer answer"]
  )
  assert result.scores == (1.0, 0.0)
  assert parse_verdict("[[A]] no wait [[ B ]]") == SECOND and parse_verdict("tie") is None
  assert parse_verdict("Equally good. [[C]]") == TIE


class CutAtBudget:
  """A judge that reasons, then gives its verdict last, and whose answer the backend cuts after
  `options.max_new_tokens` words (one word = one token here), as a server cuts at max_tokens."""

  def __init__(self, answers):
    self.answers, self.budgets = answers, []

  def chat(self, conversations, options):
    self.budgets.append(options.max_new_tokens)
    out = []
    for (msg,) in conversations:
      text = msg["content"]
      question = text.split("[User Question]\n")[1].split("\n")[0]
      first = text.split("[The Start of Assistant A's Answer]\n")[1].split("\n[The End")[0]
      second = text.split("[The Start of Assistant B's Answer]\n")[1].split("\n[The End")[0]
      words = self.answers[(question, first, second)].split()
      out.append(" ".join(words[: options.max_new_tokens]))
    return out


def test_verdicts_cut_at_the_budget_or_missing_are_counted_not_scored_as_ties():
  long = "Both answers are relevant but the first is more precise and complete so"
  answers = {
      ("q1", "a1", "b1"): "A is better. [[A]]",  # q1: A wins in both orders -> 1
      ("q1", "b1", "a1"): "B is better. [[B]]",
      ("q2", "a2", "b2"): "B is better. [[B]]",  # q2: B wins in both orders -> 0
      ("q2", "b2", "a2"): "A is better. [[A]]",
      ("q3", "a3", "b3"): "First. [[A]]",  # q3: split between the orders -> 0.5
      ("q3", "b3", "a3"): "First. [[A]]",
      ("q4", "a4", "b4"): long + " [[A]]",  # q4: cut at the budget before its verdict
      ("q4", "b4", "a4"): "A is better. [[B]]",
      ("q5", "a5", "b5"): "I cannot tell.",  # q5: no verdict in either order
      ("q5", "b5", "a5"): "Hard to say.",
      ("q6", "a6", "b6"): "A is better. [[A]]",  # q6: A wins in both orders -> 1
      ("q6", "b6", "a6"): "B is better. [[B]]",
  }
  generator = CutAtBudget(answers)
  judge = llm_judge(generator)  # the default budget: the whole reasoning fits
  assert generator.budgets == [] and JUDGE_MAX_NEW_TOKENS >= 512
  ids = range(1, 7)
  full = judge_pairs(judge, [f"q{i}" for i in ids], [f"a{i}" for i in ids], [f"b{i}" for i in ids])
  assert generator.budgets == [JUDGE_MAX_NEW_TOKENS]
  assert full.scores == (1.0, 0.0, 0.5, 1.0, None, 1.0) and full.unparsed_verdicts == 2

  from langshift.generation.interface import GenerationOptions

  cut = judge_pairs(
      llm_judge(generator, GenerationOptions(max_new_tokens=8)),
      [f"q{i}" for i in ids],
      [f"a{i}" for i in ids],
      [f"b{i}" for i in ids],
  )
  # q4 (cut) and q5 (no verdict) are left out; 3 verdicts unparsed (q4's cut one, q5's two).
  assert cut.scores == (1.0, 0.0, 0.5, None, None, 1.0)
  m = cut.metrics("judge")
  assert m["judge/unparsed_verdicts"] == 3 and m["judge/judged_pairs"] == 4
  # By hand over the 4 judged pairs: (1 + 0 + 0.5 + 1) / 4 = 62.5 (as ties, the 6 pairs would
  # have given (1 + 0 + 0.5 + 0.5 + 0.5 + 1) / 6 = 58.3).
  assert m["judge/score"] == pytest.approx(62.5)
  assert (m["judge/win_rate"], m["judge/tie_rate"], m["judge/loss_rate"]) == (0.5, 0.25, 0.25)


def test_no_judged_pair_is_no_score():
  result = judge_pairs(lambda triples: [None] * len(triples), ["q", "r"], ["a", "b"], ["c", "d"])
  m = result.metrics("judge")
  assert m["judge/unparsed_verdicts"] == 4 and m["judge/judged_pairs"] == 0
  assert math.isnan(m["judge/score"]) and math.isnan(m["judge/tie_rate"])  # not 50, not 0
  with pytest.raises(ValueError, match="returned 1 verdicts for 4"):
    judge_pairs(lambda triples: [FIRST], ["q", "r"], ["a", "b"], ["c", "d"])
