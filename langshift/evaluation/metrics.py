"""Per-example metrics for generation tasks; each returns a float in [0, 1].

Text normalisation follows SQuAD (lower-case, drop punctuation and English articles, collapse
whitespace), extended to Unicode punctuation so Russian, Arabic and Chinese answers compare fairly.
Chinese has no spaces: tokens for F1/ROUGE are words for space-separated scripts and single
characters for CJK.
"""

from __future__ import annotations

import collections
import re
import unicodedata
from collections.abc import Sequence

from langshift.evaluation import use_exam

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def normalize_answer(text: str) -> str:
  text = text.lower()
  text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text)
  text = _ARTICLES.sub(" ", text)
  return " ".join(text.split())


def tokens_of(text: str) -> list[str]:
  """Words, with every CJK character its own token."""
  return _CJK.sub(lambda m: f" {m.group(0)} ", text).split()


def exact_match(prediction: str, reference: str) -> float:
  return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
  """SQuAD token F1 on normalised text."""
  pred, ref = tokens_of(normalize_answer(prediction)), tokens_of(normalize_answer(reference))
  if not pred or not ref:
    return float(pred == ref)
  common = sum((collections.Counter(pred) & collections.Counter(ref)).values())
  if common == 0:
    return 0.0
  precision, recall = common / len(pred), common / len(ref)
  return 2 * precision * recall / (precision + recall)


def _ngrams(tokens: Sequence[str], n: int) -> collections.Counter:
  return collections.Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def rouge_n_recall(prediction: str, reference: str, n: int = 1) -> float:
  """Share of the reference's n-grams (with multiplicity) that the prediction contains."""
  ref = _ngrams(tokens_of(normalize_answer(reference)), n)
  if not ref:
    return 0.0
  pred = _ngrams(tokens_of(normalize_answer(prediction)), n)
  return sum((ref & pred).values()) / sum(ref.values())


def rouge12_recall(prediction: str, reference: str) -> float:
  """Mean of ROUGE-1 and ROUGE-2 recall: Darumeru's abstractive summary score (Tikhomirov &
  Chernyshev 2024, arXiv:2412.21140, Sec. 2.3.3)."""
  return (rouge_n_recall(prediction, reference, 1) + rouge_n_recall(prediction, reference, 2)) / 2


def lcs_length(a: Sequence, b: Sequence) -> int:
  """Length of the longest common subsequence, bit-parallel (Allison & Dix 1986).

  Bit i of `row` is 0 where the LCS of a prefix of b with a[:i+1] grows; big-int arithmetic makes a
  500 x 500 character comparison take well under a millisecond.
  """
  if not a or not b:
    return 0
  match: dict = {}
  for i, x in enumerate(a):
    match[x] = match.get(x, 0) | (1 << i)
  full = (1 << len(a)) - 1
  row = full
  for y in b:
    m = row & match.get(y, 0)
    row = ((row + m) | (row - m)) & full
  return len(a) - bin(row).count("1")


def rouge_l_recall(prediction: str, reference: str) -> float:
  ref, pred = tokens_of(normalize_answer(reference)), tokens_of(normalize_answer(prediction))
  return lcs_length(ref, pred) / len(ref) if ref else 0.0


def rouge_l_f1(prediction: str, reference: str) -> float:
  """ROUGE-L F-measure (Lin 2004) over words / CJK characters of normalised text (Gazeta)."""
  ref, pred = tokens_of(normalize_answer(reference)), tokens_of(normalize_answer(prediction))
  lcs = lcs_length(ref, pred)
  if not lcs:
    return 0.0
  recall, precision = lcs / len(ref), lcs / len(pred)
  return 2 * precision * recall / (precision + recall)


def length_ratio(prediction: str, reference: str) -> float:
  """min(p/s, s/p) over character lengths: Darumeru's sentence-copy score."""
  p, s = len(prediction.strip()), len(reference.strip())
  if p == 0 or s == 0:
    return float(p == s)
  return min(p / s, s / p)


def lcs_copy_ratio(prediction: str, reference: str) -> float:
  """LCS(prediction, reference) / len(reference), over characters."""
  reference, prediction = reference.strip(), prediction.strip()
  return lcs_length(reference, prediction) / len(reference) if reference else 0.0


def copy_success(prediction: str, reference: str, threshold: float = 0.99) -> float:
  """1 when the paragraph was copied (LCS/len >= threshold): Darumeru's paragraph-copy score."""
  return float(lcs_copy_ratio(prediction, reference) >= threshold)


GENERATION_METRICS = {
    "exact_match": exact_match,
    "f1": token_f1,
    "rouge1_recall": rouge_n_recall,
    "rouge2_recall": lambda p, r: rouge_n_recall(p, r, 2),
    "rouge12_recall": rouge12_recall,
    "rougeL_recall": rouge_l_recall,
    "rougeL_f1": rouge_l_f1,
    "length_ratio": length_ratio,
    "lcs_ratio": lcs_copy_ratio,
    "copy_rate": copy_success,
}

# Metrics of a whole task: (outputs, examples) -> score.
TASK_METRICS = {"use_grade": use_exam.grade_norm}
