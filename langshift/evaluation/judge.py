"""Side-by-side judging with position-bias control, as in Shaham et al. 2024, "Multilingual
Instruction Tuning With Just a Pinch of Multilinguality" (arXiv:2401.01854).

Every pair is judged twice, once in each order (Sec. 2.3). Model A scores 1 when the judge picks
it in both orders, 0 when the judge picks B in both, and 0.5 when the picks differ or the judge
declares a tie. The "IF score" is 100 x the mean over the judged pairs: 50 means parity. It is
a pairwise preference, not MT-Bench's 1-10 single-answer grade, and the two do not compare.

A verdict that cannot be parsed (no "[[A]]" / "[[B]]" / "[[C]]", e.g. a judge cut off by its token
budget while still reasoning) is not a tie: a pair with an unparsed verdict in either order is
left out of the score, and `PairwiseResult` counts the unparsed verdicts and the judged pairs, so a
judge that cannot answer shows up as such instead of pulling the score towards 50.

Any judge fits: a `JudgeFn` maps (question, first response, second response) triples to
"first" / "second" / "tie" / None (unparsed). `llm_judge` builds one from any `TextGenerator` (a
local model or an OpenAI-compatible server).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Sequence

from langshift.generation.interface import GenerationOptions, TextGenerator

FIRST, SECOND, TIE = "first", "second", "tie"
VERDICTS = (FIRST, SECOND, TIE)
JudgeFn = Callable[[Sequence[tuple[str, str, str]]], list]
# New tokens a judge may spend. The prompts ask for an explanation before the verdict, which
# comes last: a budget that cuts the explanation loses the verdict. A few sentences are ~100-300
# tokens; 1,024 leaves room for a judge that reasons at length (e.g. a reasoning model's longer
# answers) while bounding its cost at half of what FastChat's MT-Bench judge allows (2,048). A
# verdict cut off anyway is counted unparsed and reported, never scored.
JUDGE_MAX_NEW_TOKENS = 1024


def pair_score(pick_a_first: str | None, pick_b_first: str | None) -> float | None:
  """Score of model A from the verdicts with A shown first and with B shown first; None when
  either verdict could not be parsed (the pair is left out of the score)."""
  if pick_a_first not in VERDICTS or pick_b_first not in VERDICTS:
    return None
  a_wins_both = pick_a_first == FIRST and pick_b_first == SECOND
  b_wins_both = pick_a_first == SECOND and pick_b_first == FIRST
  return 1.0 if a_wins_both else 0.0 if b_wins_both else 0.5


@dataclasses.dataclass(frozen=True)
class PairwiseResult:
  """Per pair in input order, A's score (1 / 0.5 / 0), or None for a pair left out because a
  verdict in either order could not be parsed; and the number of such verdicts."""

  scores: tuple[float | None, ...]
  unparsed_verdicts: int = 0

  @property
  def judged(self) -> tuple[float, ...]:
    return tuple(s for s in self.scores if s is not None)

  @property
  def score(self) -> float:
    """100 x mean pair score over the judged pairs (the IF score when B is the monolingually
    tuned reference); NaN when no pair could be judged (neither a loss nor parity)."""
    judged = self.judged
    return 100.0 * sum(judged) / len(judged) if judged else math.nan

  def rate(self, value: float) -> float:
    """Share of the judged pairs that scored `value`; NaN when none was judged."""
    judged = self.judged
    return sum(s == value for s in judged) / len(judged) if judged else math.nan

  def metrics(self, prefix: str = "judge") -> dict[str, float]:
    return {
        f"{prefix}/score": self.score,
        f"{prefix}/win_rate": self.rate(1.0),
        f"{prefix}/tie_rate": self.rate(0.5),
        f"{prefix}/loss_rate": self.rate(0.0),
        f"{prefix}/unparsed_verdicts": self.unparsed_verdicts,
        f"{prefix}/judged_pairs": len(self.judged),
    }


def judge_pairs(
    judge: JudgeFn, questions: Sequence[str], responses_a: Sequence[str], responses_b: Sequence[str]
) -> PairwiseResult:
  """Runs the judge on both orders of every pair (one batched call) and scores model A."""
  if not len(questions) == len(responses_a) == len(responses_b):
    raise ValueError("questions and both response lists must have the same length")
  n = len(questions)
  triples = [(q, a, b) for q, a, b in zip(questions, responses_a, responses_b)]
  triples += [(q, b, a) for q, a, b in zip(questions, responses_a, responses_b)]
  picks = list(judge(triples))
  if len(picks) != 2 * n:
    raise ValueError(f"the judge returned {len(picks)} verdicts for {2 * n} judgements")
  return PairwiseResult(
      tuple(pair_score(picks[i], picks[n + i]) for i in range(n)),
      unparsed_verdicts=sum(p not in VERDICTS for p in picks),
  )


JUDGE_PROMPT = """Please act as an impartial judge and evaluate the quality of the responses \
provided by two AI assistants to the user question displayed below. Choose the assistant that \
follows the user's instructions and answers the question better, considering helpfulness, \
relevance, accuracy, depth, and whether it answers in the language of the question. Do not let \
the order of the responses, their length, or the assistants' names influence you. After a short \
explanation, output your final verdict strictly as "[[A]]" if assistant A is better or "[[B]]" \
if assistant B is better.

[User Question]
{question}

[The Start of Assistant A's Answer]
{first}
[The End of Assistant A's Answer]

[The Start of Assistant B's Answer]
{second}
[The End of Assistant B's Answer]"""

_VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")


def parse_verdict(text: str) -> str | None:
  """The last [[A]] / [[B]] / [[C]] (a declared tie) in the judge's answer; None when absent."""
  found = _VERDICT.findall(text)
  if not found:
    return None
  return {"A": FIRST, "B": SECOND, "C": TIE}[found[-1]]


def llm_judge(
    generator: TextGenerator,
    options: GenerationOptions = GenerationOptions(max_new_tokens=JUDGE_MAX_NEW_TOKENS),
    prompt: str = JUDGE_PROMPT,
) -> JudgeFn:
  """A `JudgeFn` that asks `generator` (with `options`: pass the judge role's) and parses each
  answer's verdict; an answer without one (e.g. cut at `options.max_new_tokens`) is None."""

  def judge(triples):
    conversations = [
        [{"role": "user", "content": prompt.format(question=q, first=a, second=b)}]
        for q, a, b in triples
    ]
    return [parse_verdict(t) for t in generator.chat(conversations, options)]

  return judge
