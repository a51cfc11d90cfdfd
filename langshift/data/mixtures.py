"""Weighted mixture of sources: a pure, seeded, random-access map position -> (source, index).

The stream is cut into blocks of about `block` examples. After b blocks source k has contributed
exactly round(b * block * w_k) examples, so realised proportions track the weights to within one
example per source at every block boundary; inside a block the sources take turns in a seeded
random order (each source is still read in its own order). Because position i maps to
(source, index) by arithmetic alone, the mixture is a grain `MapDataset`: resumable from an
index, shardable by slicing, identical on every host.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence

import grain
import numpy as np

# Weights are quantised to integers summing to this, so block arithmetic is exact at any position.
_WEIGHT_QUANTUM = 1 << 20


class WeightedMixture:
  """Position -> (source index, index within that source), for normalised `weights`."""

  def __init__(self, weights: Sequence[float], seed: int, block: int = 1024):
    weights = np.asarray(weights, np.float64)
    if weights.ndim != 1 or not len(weights) or (weights <= 0).any():
      raise ValueError(f"mixture weights must be positive, got {weights.tolist()}")
    if block < 2 * len(weights):
      raise ValueError(f"mixture block {block} is too small for {len(weights)} sources")
    self.weights = weights / weights.sum()
    self._q = _largest_remainder(self.weights, _WEIGHT_QUANTUM)
    self._seed = int(seed)
    self._block = int(block)

  def _cumulative(self, b: int) -> list[int]:
    """Examples of each source in the first b blocks (exact integer rounding)."""
    total = b * self._block
    return [(total * q + _WEIGHT_QUANTUM // 2) // _WEIGHT_QUANTUM for q in self._q]

  def _block_start(self, b: int) -> int:
    return sum(self._cumulative(b))

  # One mixture lives for the whole run, so the cache holding `self` costs nothing.
  @functools.lru_cache(maxsize=8)  # noqa: B019
  def _block_layout(self, b: int) -> tuple[np.ndarray, np.ndarray]:
    """(source, index within the source) of every position of block b."""
    lo, hi = self._cumulative(b), self._cumulative(b + 1)
    counts = np.subtract(hi, lo)
    source = np.repeat(np.arange(len(counts)), counts)
    source = source[np.random.default_rng([self._seed, b]).permutation(len(source))]
    # Each source is read in order: its k-th position in the block gets its k-th next index.
    index = np.empty(len(source), np.int64)
    for k, first in enumerate(lo):
      where = source == k
      index[where] = first + np.arange(int(where.sum()))
    return source, index

  def __getitem__(self, i: int) -> tuple[int, int]:
    i = int(i)
    b = i // self._block
    while self._block_start(b) > i:
      b -= 1
    while self._block_start(b + 1) <= i:
      b += 1
    source, index = self._block_layout(b)
    r = i - self._block_start(b)
    return int(source[r]), int(index[r])

  def source_counts(self, n: int) -> np.ndarray:
    """Examples drawn from each source among positions [0, n)."""
    b = n // self._block
    while self._block_start(b) > n:
      b -= 1
    counts = np.asarray(self._cumulative(b), np.int64)
    for i in range(self._block_start(b), n):
      counts[self[i][0]] += 1
    return counts

  def realised_proportions(self, n: int) -> np.ndarray:
    return self.source_counts(n) / max(n, 1)


def _largest_remainder(weights: np.ndarray, total: int) -> list[int]:
  raw = weights * total
  q = np.floor(raw).astype(np.int64)
  q[np.argsort(-(raw - q), kind="stable")[: total - int(q.sum())]] += 1
  if (q == 0).any():
    raise ValueError(f"a mixture weight is below 1/{total}: {weights.tolist()}")
  return [int(x) for x in q]


class MixtureMapDataset(grain.MapDataset):
  """Elements `(source index, *element of that source)` in the order of a `WeightedMixture`.

  The sources must accept any index (repeat them: `ds.shuffle(seed).repeat()`).
  """

  def __init__(self, sources: Sequence[grain.MapDataset], mixture: WeightedMixture):
    super().__init__(list(sources))
    if len(sources) != len(mixture.weights):
      raise ValueError(f"{len(sources)} sources but {len(mixture.weights)} weights")
    self._mixture = mixture

  def __len__(self):
    return sys.maxsize

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    k, j = self._mixture[index]
    element = self._parents[k][j]
    return None if element is None else (k, *element)

  def __str__(self):
    return f"MixtureMapDataset(weights={np.round(self._mixture.weights, 4).tolist()})"
