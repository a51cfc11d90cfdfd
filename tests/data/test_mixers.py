"""Mixers are pure and seeded: weighted mixture proportions (the pinch recipe's fixed-budget
mixtures: tests/recipes/test_pinch_mixture.py)."""

import collections

import grain
import numpy as np
import pytest

from langshift.data import mixtures


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
