"""Side-by-side judging with position-bias control, as in Shaham et al. 2024, "Multilingual
Instruction Tuning With Just a Pinch of Multilinguality" (arXiv:2401.01854).

Every pair is judged twice, once in each order. Model A scores 1 when the judge picks it in both
orders, 0 when the judge picks B in both, and 0.5 otherwise (the picks differ, or a verdict could
not be parsed). The "IF score" is 100 x the mean: 50 means parity.

Any judge fits: a `JudgeFn` maps (question, first response, second response) triples to
"first" / "second" / None. `llm_judge` builds one from any `TextGenerator` (a local model or an
OpenAI-compatible server).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence

from langshift.generation.interface import GenerationOptions, TextGenerator

FIRST, SECOND = "first", "second"
JudgeFn = Callable[[Sequence[tuple[str, str, str]]], list]


def pair_score(pick_a_first: str | None, pick_b_first: str | None) -> float:
  """Score of model A from the verdicts with A shown first and with B shown first."""
  a_wins_both = pick_a_first == FIRST and pick_b_first == SECOND
  b_wins_both = pick_a_first == SECOND and pick_b_first == FIRST
  return 1.0 if a_wins_both else 0.0 if b_wins_both else 0.5


@dataclasses.dataclass(frozen=True)
class PairwiseResult:
  scores: tuple[float, ...]

  @property
  def score(self) -> float:
    """100 x mean pair score (the IF score when B is the monolingually tuned reference)."""
    return 100.0 * sum(self.scores) / len(self.scores) if self.scores else 0.0

  def rate(self, value: float) -> float:
    return sum(s == value for s in self.scores) / len(self.scores) if self.scores else 0.0

  def metrics(self, prefix: str = "judge") -> dict[str, float]:
    return {
        f"{prefix}/score": self.score,
        f"{prefix}/win_rate": self.rate(1.0),
        f"{prefix}/tie_rate": self.rate(0.5),
        f"{prefix}/loss_rate": self.rate(0.0),
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
  picks = judge(triples)
  return PairwiseResult(tuple(pair_score(picks[i], picks[n + i]) for i in range(n)))


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

_VERDICT = re.compile(r"\[\[\s*([AB])\s*\]\]")


def parse_verdict(text: str) -> str | None:
  """The last [[A]] / [[B]] in the judge's answer; None when absent."""
  found = _VERDICT.findall(text)
  if not found:
    return None
  return FIRST if found[-1] == "A" else SECOND


def llm_judge(
    generator: TextGenerator,
    options: GenerationOptions = GenerationOptions(max_new_tokens=512),
    prompt: str = JUDGE_PROMPT,
) -> JudgeFn:
  def judge(triples):
    conversations = [
        [{"role": "user", "content": prompt.format(question=q, first=a, second=b)}]
        for q, a, b in triples
    ]
    return [parse_verdict(t) for t in generator.chat(conversations, options)]

  return judge
