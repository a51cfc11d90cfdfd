"""The averaging operator: how each token of a new vocabulary is made of old tokens (LEP:
Tikhomirov & Chernyshev 2024, arXiv:2412.21140).

One sparse [new_vocab, old_vocab] matrix serves both embedding initialisation (new rows =
operator @ old rows) and LEP vocabulary conversion (the least-squares system is built from
operator @ base and operator @ instruct). A row is one-hot for a token the old vocabulary
already has (same token, same decoded string, or special token with the same content), the
mean of the old sub-token rows otherwise, and empty where the old tokenizer cannot spell the
token at all (those rows fall back to the global mean).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from langshift.tokenization import vocabulary as vocabulary_lib


@dataclasses.dataclass(frozen=True)
class VocabularyMap:
  operator: sp.csr_matrix  # [new_size, old_size] float64; each row sums to 1 or is empty
  kept: np.ndarray  # [new_size] bool: the row copies exactly one old row
  fallback: np.ndarray  # [new_size] bool: empty row, initialised to the global mean

  @property
  def new_size(self) -> int:
    return self.operator.shape[0]

  @property
  def old_size(self) -> int:
    return self.operator.shape[1]

  def kept_pairs(self) -> tuple[np.ndarray, np.ndarray]:
    """(new ids, old ids) of the tokens both vocabularies share: LEP's overlap set."""
    new_ids = np.flatnonzero(self.kept)
    return new_ids, self.operator[new_ids].indices.astype(np.int64)


def vocabulary_map_from_decompositions(
    decompositions: Sequence[Sequence[int] | None],
    old_size: int,
    kept: Sequence[bool] | None = None,
) -> VocabularyMap:
  """Row i averages the old rows `decompositions[i]` (repeats count); None or [] = fallback."""
  rows, cols, weights = [], [], []
  for i, ids in enumerate(decompositions):
    if ids:
      rows += [i] * len(ids)
      cols += list(ids)
      weights += [1.0 / len(ids)] * len(ids)
  operator = sp.csr_matrix(
      (np.asarray(weights, np.float64), (rows, cols)), shape=(len(decompositions), old_size)
  )
  operator.sum_duplicates()
  fallback = np.diff(operator.indptr) == 0
  if kept is None:
    kept = [ids is not None and len(set(ids)) == 1 and len(ids) == 1 for ids in decompositions]
  return VocabularyMap(operator, np.asarray(kept, bool), fallback)


def identity_vocabulary_map(size: int) -> VocabularyMap:
  return vocabulary_map_from_decompositions([[i] for i in range(size)], size)


def build_vocabulary_map(
    old_tokenizer, new_tokenizer, *, special_token_map: Mapping[str, str] | None = None
) -> VocabularyMap:
  """Maps every id of `new_tokenizer` onto `old_tokenizer`'s ids (tokenizers.Tokenizer, a
  tokenizer.json dict or a path).

  Kept tokens are matched first by token string (when both spell tokens the same way, so a
  shrunk or extended vocabulary maps back exactly), then by decoded bytes; special tokens by
  content, or through `special_token_map` {new content: old content}, e.g. {"</s>":
  "<|endoftext|>"}. Other tokens are re-tokenized by the old tokenizer (LEP's initialisation,
  Tikhomirov & Chernyshev 2024, arXiv:2412.21140).
  """
  old = vocabulary_lib.vocabulary(old_tokenizer)
  new = vocabulary_lib.vocabulary(new_tokenizer)
  special_token_map = dict(special_token_map or {})
  by_content = {token: i for i, token in enumerate(old.tokens) if token is not None}
  by_token = old.model_vocab if old.kind == new.kind else {}
  by_surface = _surface_index(old)

  decompositions: list[list[int] | None] = []
  kept = np.zeros(new.size, bool)
  for i, token in enumerate(new.tokens):
    if token is None:
      decompositions.append(None)
    elif new.special[i]:
      old_id = by_content.get(special_token_map.get(token, token))
      kept[i] = old_id is not None
      decompositions.append([old_id] if kept[i] else None)
    elif token in by_token:
      kept[i] = True
      decompositions.append([by_token[token]])
    elif new.surfaces[i] in by_surface:
      kept[i] = True
      decompositions.append([by_surface[new.surfaces[i]]])
    else:
      decompositions.append(vocabulary_lib.decompose(old, new.surfaces[i]) or None)
  return vocabulary_map_from_decompositions(decompositions, old.size, kept)


def _surface_index(vocab: vocabulary_lib.Vocabulary) -> dict[bytes, int]:
  """Decoded bytes -> old id; a SentencePiece byte piece (<0x20>) yields to a real token (▁)."""
  index: dict[bytes, int] = {}
  byte_pieces = []
  for i, (token, surface) in enumerate(zip(vocab.tokens, vocab.surfaces)):
    if surface is None or not surface:
      continue
    if vocab.kind == "metaspace" and vocabulary_lib.BYTE_PIECE.match(token):
      byte_pieces.append((surface, i))
    else:
      index.setdefault(surface, i)
  for surface, i in byte_pieces:
    index.setdefault(surface, i)
  return index
