import pytest

from langshift.evaluation.judge import (
    FIRST,
    SECOND,
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
  assert pair_score(None, SECOND) == 0.5  # unparseable verdict counts as a tie


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
