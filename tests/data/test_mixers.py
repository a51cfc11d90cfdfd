"""Mixers are pure and seeded: weighted mixture proportions, pinch and language-count mixtures."""

import collections

import grain
import numpy as np
import pytest

from langshift.data import mixtures, pinch


@pytest.mark.parametrize("weights", [[0.7, 0.3], [1, 1, 1], [0.05, 0.15, 0.8], [3, 1e-3]])
def test_weighted_mixture_realised_proportions(weights):
  mix = mixtures.WeightedMixture(weights, seed=3, block=256)
  w = np.asarray(weights) / np.sum(weights)
  draws = [mix[i] for i in range(5000)]
  sources = np.array([k for k, _ in draws])
  for n in (256, 1000, 2560, 5000):
    counts = np.bincount(sources[:n], minlength=len(w))
    assert (counts == mix.source_counts(n)).all()
    # Within one example per source at block boundaries, within a block anywhere.
    tol = 1 if n % 256 == 0 else 256 * w.max() + 1
    assert np.abs(counts - w * n).max() <= tol, (n, counts, w * n)
  # Each source is read in order, every index once: no example repeated or skipped.
  for k in range(len(w)):
    assert [j for s, j in draws if s == k] == list(range(int((sources == k).sum())))


def test_weighted_mixture_is_pure_and_seeded():
  a = mixtures.WeightedMixture([0.6, 0.4], seed=1, block=64)
  b = mixtures.WeightedMixture([0.6, 0.4], seed=1, block=64)
  c = mixtures.WeightedMixture([0.6, 0.4], seed=2, block=64)
  seq = [a[i] for i in range(640)]
  assert seq == [b[i] for i in range(640)]
  assert [a[i] for i in reversed(range(640))] == seq[::-1]  # random access, no hidden state
  other = [c[i] for i in range(640)]
  assert other != seq and sorted(other) == sorted(seq)  # same content per block, new order
  assert a[10**12] == b[10**12]  # exact arithmetic far into the stream
  with pytest.raises(ValueError, match="positive"):
    mixtures.WeightedMixture([1.0, 0.0], seed=0)


def test_mixture_map_dataset_draws_from_repeated_sources():
  sources = [
      grain.MapDataset.source([("a", i) for i in range(5)]).shuffle(seed=1).repeat(),
      grain.MapDataset.source([("b", i) for i in range(3)]).repeat(),
  ]
  ds = mixtures.MixtureMapDataset(sources, mixtures.WeightedMixture([0.5, 0.5], seed=0, block=8))
  items = [ds[i] for i in range(40)]
  assert collections.Counter(k for k, *_ in items) == {0: 20, 1: 20}
  first_epoch_a = [r for k, w, r in items if k == 0][:5]
  assert sorted(first_epoch_a) == list(range(5))  # an epoch of the shuffled source, all once
  assert [ds[i] for i in range(40)] == items and ds[::2][3] == items[6]


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
