"""The pinch recipe's fixed-budget mixtures are pure and seeded: P% over the languages (Shaham et
al. 2024, arXiv:2401.01854, Sec. 3.2), parallel and disjoint assignments, the language-count
study's uniform budgets (Sec. 3.4)."""

import collections

import pytest

from langshift.recipes.pinch import mixture as pinch


def test_pinch_one_percent_of_4640():
  # Shaham et al. 2024, Sec. 3.2: 1% of 4,640 over all 12 languages, English included: the 11
  # others get floor(46.4 x 11/12) = floor(42.53) = 42 (11 x 3 + 9: nine get 4, two get 3).
  langs = ("ar", "zh", "cs", "et", "fi", "he", "hi", "it", "ru", "es", "sw")
  mix = pinch.pinch_mixture(4640, 1, langs, seed=0)
  counts = pinch.language_counts(mix)
  assert len(mix) == 4640 and counts["en"] == 4640 - 42
  assert sorted(counts[lang] for lang in langs) == [3] * 2 + [4] * 9  # 42 spread evenly
  ids = [i for _, i in mix]
  assert len(set(ids)) == 4640  # disjoint: every instruction once
  assert mix == pinch.pinch_mixture(4640, 1, langs, seed=0)
  assert mix != pinch.pinch_mixture(4640, 1, langs, seed=1)
  assert pinch.language_counts(pinch.pinch_mixture(4640, 0, langs)) == {"en": 4640}
  full = pinch.language_counts(pinch.pinch_mixture(4640, 100, langs))
  assert full["en"] == 4640 - 4253 == 387  # English keeps its twelfth at P = 100
  # P% over the non-English languages only: round(1% of 4,640) = 46, no English at P = 100.
  old = pinch.language_counts(pinch.pinch_mixture(4640, 1, langs, seed=0, share_over="non_english"))
  assert old["en"] == 4640 - 46 and sorted(old[lang] for lang in langs) == [4] * 9 + [5] * 2
  old_full = pinch.language_counts(pinch.pinch_mixture(4640, 100, langs, share_over="non_english"))
  assert "en" not in old_full and sum(old_full.values()) == 4640


def test_pinch_parallel_assignment_copies_the_same_instructions():
  mix = pinch.pinch_mixture(
      100, 30, ["ar", "ru", "sw"], assignment="parallel", seed=4, share_over="non_english"
  )
  by_lang = collections.defaultdict(list)
  for lang, i in mix:
    by_lang[lang].append(i)
  assert {lang: len(v) for lang, v in by_lang.items()} == {"en": 70, "ar": 10, "ru": 10, "sw": 10}
  assert set(by_lang["ar"]) == set(by_lang["ru"]) == set(by_lang["sw"])  # parallel copies
  assert set(by_lang["ar"]) <= set(by_lang["en"])  # translations of instructions English has
  assert len(set(by_lang["en"])) == 70


def test_language_count_schedule_and_uniform_budget():
  schedule = pinch.language_count_schedule()
  assert schedule[0] == ("en",) and schedule[-1] == ("en", "ar", "fi", "it", "ru", "sw")
  assert [len(s) for s in schedule] == [1, 2, 3, 4, 5, 6]
  for langs in schedule:
    counts = pinch.language_counts(pinch.uniform_mixture(4640, langs, seed=0))
    assert sum(counts.values()) == 4640 and max(counts.values()) - min(counts.values()) <= 1
    assert set(counts) == set(langs)


def test_pinch_errors():
  with pytest.raises(ValueError, match="base language"):
    pinch.pinch_mixture(10, 10, ["en", "ar"])
  with pytest.raises(ValueError, match="percent"):
    pinch.pinch_mixture(10, 150, ["ar"])
  with pytest.raises(ValueError, match="needs at least"):
    pinch.pinch_mixture(100, 10, ["ar"], num_source_examples=50)
  with pytest.raises(ValueError, match="share_over='english'; expected one of"):
    pinch.pinch_mixture(100, 10, ["ar"], share_over="english")
