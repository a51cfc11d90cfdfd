"""Resizing embedding matrices to a new vocabulary and initialising the new rows (LEP:
Tikhomirov & Chernyshev 2024, arXiv:2412.21140).

Functions take and return arrays laid out [vocab, embed] (one row per token); the param-tree
wrapper handles langshift's `lm_head/kernel` [embed, vocab]. Arithmetic is fp32 whatever the
storage dtype: bf16 means of many rows would otherwise lose most of their mantissa.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from langshift.embeddings import param_tree
from langshift.embeddings.vocabulary_map import VocabularyMap

# Below this norm a mean of sub-token rows is treated as missing and the new row falls back to the
# global mean row (a numerical guard chosen by langshift).
MIN_MEAN_NORM = 1e-12
INIT_METHODS = ("mean", "random")


def _old_rows(old: np.ndarray, vocab_map: VocabularyMap) -> np.ndarray:
  old = np.asarray(old)
  if old.shape[0] < vocab_map.old_size:
    raise ValueError(f"matrix has {old.shape[0]} rows, old tokenizer needs {vocab_map.old_size}")
  # Rows past the tokenizer (padding to a multiple of 64/128) belong to no token.
  return old[: vocab_map.old_size].astype(np.float32)


def _pad(rows: np.ndarray, num_rows: int | None, fill: np.ndarray) -> np.ndarray:
  if num_rows is None or num_rows == rows.shape[0]:
    return rows
  if num_rows < rows.shape[0]:
    raise ValueError(f"num_rows {num_rows} < new vocabulary size {rows.shape[0]}")
  return np.concatenate([rows, np.broadcast_to(fill, (num_rows - rows.shape[0], rows.shape[1]))])


def mean_subtoken_rows(
    old: np.ndarray, vocab_map: VocabularyMap, *, num_rows: int | None = None
) -> np.ndarray:
  """New matrix whose row i is the mean of the old rows making up new token i.

  Kept tokens get their old row bit for bit; tokens the old tokenizer cannot spell, or whose
  mean vanishes, get the mean of all old rows. `num_rows` pads (with that mean) past the
  tokenizer, e.g. to a shardable multiple. Returned in `old`'s dtype.
  """
  old32 = _old_rows(old, vocab_map)
  global_mean = old32.mean(axis=0)
  rows = np.asarray(vocab_map.operator.astype(np.float32) @ old32, np.float32)
  missing = vocab_map.fallback | (np.linalg.norm(rows, axis=1) < MIN_MEAN_NORM)
  rows[missing & ~vocab_map.kept] = global_mean
  return _pad(rows, num_rows, global_mean).astype(np.asarray(old).dtype)


def random_normal_rows(
    old: np.ndarray, vocab_map: VocabularyMap, *, seed: int, num_rows: int | None = None
) -> np.ndarray:
  """Kept tokens copy their rows; every other row ~ N(mean, std) of the old rows, per dim."""
  old32 = _old_rows(old, vocab_map)
  mean, std = old32.mean(axis=0), old32.std(axis=0)
  total = vocab_map.new_size if num_rows is None else num_rows
  rows = np.random.default_rng(seed).normal(mean, std, (total, old32.shape[1])).astype(np.float32)
  new_ids, old_ids = vocab_map.kept_pairs()
  rows[new_ids] = old32[old_ids]
  return rows.astype(np.asarray(old).dtype)


def init_embedding_rows(
    old: np.ndarray,
    vocab_map: VocabularyMap,
    *,
    method: str = "mean",
    seed: int = 0,
    num_rows: int | None = None,
) -> np.ndarray:
  if method == "mean":
    return mean_subtoken_rows(old, vocab_map, num_rows=num_rows)
  if method == "random":
    return random_normal_rows(old, vocab_map, seed=seed, num_rows=num_rows)
  raise ValueError(f"method must be one of {INIT_METHODS}, got {method!r}")


def resize_embedding_params(
    params: Any,
    vocab_map: VocabularyMap,
    *,
    method: str = "mean",
    seed: int = 0,
    num_rows: int | None = None,
) -> Any:
  """Param tree with `embed_tokens/embedding` and (if untied) `lm_head/kernel` resized to the
  new vocabulary, input and output embeddings initialised separately; other leaves untouched.
  The output embedding uses `seed + 1` so that random rows differ from the input ones."""
  matrices = param_tree.embedding_matrices(params)
  new = {
      name: init_embedding_rows(rows, vocab_map, method=method, seed=seed + k, num_rows=num_rows)
      for k, (name, rows) in enumerate(matrices.items())
  }
  return param_tree.replace_embedding_matrices(params, new)
