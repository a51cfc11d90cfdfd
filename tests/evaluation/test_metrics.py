import random

import pytest

from langshift.evaluation import metrics


def _lcs_dp(a, b):
  t = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
  for i in range(len(a)):
    for j in range(len(b)):
      t[i + 1][j + 1] = t[i][j] + 1 if a[i] == b[j] else max(t[i][j + 1], t[i + 1][j])
  return t[-1][-1]


def test_lcs_length_matches_dynamic_programming():
  rng = random.Random(0)
  assert metrics.lcs_length("ABCBDAB", "BDCABA") == 4
  for _ in range(200):
    a = "".join(rng.choice("abcд") for _ in range(rng.randint(0, 30)))
    b = "".join(rng.choice("abcд") for _ in range(rng.randint(0, 30)))
    assert metrics.lcs_length(a, b) == _lcs_dp(a, b)


def test_exact_match_and_f1_by_hand():
  assert metrics.exact_match("The  Cat!", "cat") == 1.0
  assert metrics.exact_match("Кот.", "кот") == 1.0
  assert metrics.exact_match("a dog", "cat") == 0.0
  # pred {red, big, car} vs ref {big, red, truck, now}: common 2, P = 2/3, R = 2/4 -> F1 = 4/7.
  assert metrics.token_f1("red big car", "big red truck now") == pytest.approx(4 / 7)
  assert metrics.token_f1("", "") == 1.0 and metrics.token_f1("x", "") == 0.0
  # CJK counts characters: 北京大学 vs 北京: P = 2/4, R = 1 -> F1 = 2/3.
  assert metrics.token_f1("北京大学", "北京") == pytest.approx(2 / 3)


def test_rouge_recall_by_hand():
  ref, pred = "the cat sat on the mat", "a cat sat on a mat"
  # After dropping articles: ref [cat sat on mat], pred [cat sat on mat].
  assert metrics.rouge_n_recall(pred, ref) == 1.0
  # ref bigrams: (x y) (y z) (z x); pred bigrams: (x y) (y q): one of three.
  assert metrics.rouge_n_recall("x y q", "x y z x", 2) == pytest.approx(1 / 3)
  # unigram recall counts multiplicity: ref x,y,z,x; pred x,y,q -> x once, y -> 2/4.
  assert metrics.rouge_n_recall("x y q", "x y z x") == pytest.approx(2 / 4)
  # ROUGE-L: LCS of [x y z x] and [x z q x] is [x z x] = 3 of 4.
  assert metrics.rouge_l_recall("x z q x", "x y z x") == pytest.approx(3 / 4)


def test_length_ratio_and_copy_rate_by_hand():
  assert metrics.length_ratio("abcd", "ab") == 0.5
  assert metrics.length_ratio("ab", "abcd") == 0.5
  assert metrics.length_ratio("", "") == 1.0 and metrics.length_ratio("", "a") == 0.0
  ref = "x" * 100
  assert metrics.lcs_copy_ratio("x" * 99 + "y", ref) == pytest.approx(0.99)
  assert metrics.copy_success("x" * 99 + "y", ref) == 1.0  # LCS/len = 0.99 passes
  assert metrics.copy_success("x" * 98 + "yy", ref) == 0.0  # 0.98 does not
  assert metrics.copy_success("  Привет, мир! и ещё", "Привет, мир!") == 1.0  # extra text allowed
