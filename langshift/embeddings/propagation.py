"""LEP embedding propagation into the instruct model (Tikhomirov & Chernyshev 2024, "Facilitating
large language model Russian adaptation with Learned Embedding Propagation", arXiv:2412.21140).

The instruct model's embeddings are assumed to be a linear map P of the base model's:
instruct ≈ base @ P. P is fitted by least squares (float64) on rows both models share, and the
base model's continually pre-trained embeddings (the *donor*, new vocabulary) are carried over as
donor @ P. Methods:
  swap        P = I: the donor rows as they are.
  overlap     fit on the tokens the old and new vocabularies share (the map's kept rows).
  conversion  fit on every new token's averaged old sub-token rows, operator @ base against
              operator @ instruct (the operator of `build_vocabulary_map`, as in initialisation).
Each matrix (input / output embedding) gets its own P; tied embeddings are one matrix.

Cost is dominated by three [rows, d] x [d, d] products (the Gram matrix, the cross term and the
final donor @ P), so rows are streamed in chunks: 128k x 4096 matrices never exist in float64.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from langshift.embeddings import param_tree
from langshift.embeddings.vocabulary_map import VocabularyMap

PROPAGATION_METHODS = ("swap", "overlap", "conversion")
SOLVERS = ("auto", "lstsq", "normal")


def system_operator(vocab_map: VocabularyMap, method: str) -> sp.csr_matrix:
  """Sparse [rows, old_vocab] selecting / averaging the old rows the fit is made on."""
  if method == "overlap":
    new_ids, old_ids = vocab_map.kept_pairs()
    return sp.csr_matrix(
        (np.ones(len(old_ids)), (np.arange(len(old_ids)), old_ids)),
        shape=(len(old_ids), vocab_map.old_size),
    )
  if method == "conversion":
    return vocab_map.operator[np.flatnonzero(~vocab_map.fallback)]
  raise ValueError(f"no least-squares system for method {method!r}")


def _chunks(operator: sp.csr_matrix, chunk_rows: int):
  for start in range(0, operator.shape[0], chunk_rows):
    yield operator[start : start + chunk_rows]


class _Buffers:
  """Reused per-chunk work arrays.

  Chunks are 64-128 MB: above glibc's mmap threshold, so fresh arrays are page-faulted in
  every time, which cost ~15% of the fit at Llama-3 scale.
  """

  def __init__(self):
    self._arrays = {}

  def get(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    size = int(np.prod(shape))
    array = self._arrays.get(name)
    if array is None or array.dtype != dtype or array.size < size:
      array = self._arrays[name] = np.empty(size, dtype)
    return array[:size].reshape(shape)


def _gather(
    operator: sp.csr_matrix,
    matrix: np.ndarray,
    dtype,
    buffers: _Buffers | None = None,
    name: str = "gather",
) -> np.ndarray:
  """operator @ matrix in `dtype`, for a chunk of an averaging operator (a few entries a row).

  Rows are summed term by term, grouped by their number of entries: scipy's sparse @ dense is
  single-threaded and took 13 s of the 69 s fit at Llama-3 scale. Only the rows the operator
  touches are converted to `dtype`. With `buffers`, the result is a reused work array.
  """
  buffers = buffers or _Buffers()
  counts = np.diff(operator.indptr)
  weights = operator.data.astype(dtype)
  out = buffers.get(name, (operator.shape[0], matrix.shape[1]), dtype)
  if np.all(counts == 1) and np.all(weights == 1):  # one-hot rows: overlap, kept tokens
    gathered = buffers.get("rows", out.shape, matrix.dtype)
    np.take(matrix, operator.indices, axis=0, out=gathered)
    np.copyto(out, gathered)
    return out
  out[...] = 0
  for count in np.unique(counts[counts > 0]):
    rows = np.flatnonzero(counts == count)
    acc = np.zeros((len(rows), matrix.shape[1]), dtype)
    for term in range(count):
      entry = operator.indptr[rows] + term
      acc += np.asarray(matrix[operator.indices[entry]], dtype) * weights[entry, None]
    out[rows] = acc
  return out


def fit_propagation_map(
    base: np.ndarray,
    instruct: np.ndarray,
    vocab_map: VocabularyMap,
    method: str,
    *,
    solver: str = "auto",
    chunk_rows: int = 8192,
    product_dtype=np.float64,
) -> np.ndarray:
  """P [d, d] float64 minimising ‖S base P − S instruct‖ for the method's system operator S.

  `solver`: 'lstsq' factorises S base directly (exact for rank-deficient systems, needs the
  whole system in memory); 'normal' accumulates Gram and cross terms chunk by chunk and solves
  the d x d normal equations by Cholesky (least-squares fallback if not positive definite);
  'auto' picks 'lstsq' for small systems. `product_dtype=np.float32` runs the chunk products in
  fp32 (about twice as fast on CPU) and still accumulates and solves in float64.
  """
  if method == "swap":
    return np.eye(base.shape[1])
  operator = system_operator(vocab_map, method)
  rows, dim = operator.shape[0], base.shape[1]
  if solver == "auto":
    solver = "lstsq" if rows * dim <= 1 << 22 else "normal"
  if solver == "lstsq":
    a = _gather(operator, base, np.float64)
    b = _gather(operator, instruct, np.float64)
    return np.linalg.lstsq(a, b, rcond=None)[0]
  if solver != "normal":
    raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
  gram = np.zeros((dim, dim))
  cross = np.zeros((dim, dim))
  buffers = _Buffers()
  product = buffers.get("product", (dim, dim), product_dtype)
  for chunk in _chunks(operator, chunk_rows):
    a = _gather(chunk, base, product_dtype, buffers, "a")
    b = _gather(chunk, instruct, product_dtype, buffers, "b")
    gram += np.matmul(a.T, a, out=product)  # numpy runs a.T @ a as a BLAS syrk
    cross += np.matmul(a.T, b, out=product)
  try:
    return scipy.linalg.cho_solve(scipy.linalg.cho_factor(gram), cross)
  except np.linalg.LinAlgError:
    return scipy.linalg.lstsq(gram, cross)[0]


def apply_propagation_map(
    donor: np.ndarray, transform: np.ndarray, *, chunk_rows: int = 8192, product_dtype=np.float64
) -> np.ndarray:
  """donor @ transform, chunk by chunk, returned in donor's dtype."""
  donor = np.asarray(donor)
  out = np.empty(donor.shape, donor.dtype)
  transform = transform.astype(product_dtype)
  buffers = _Buffers()
  for start in range(0, donor.shape[0], chunk_rows):
    stop = min(start + chunk_rows, donor.shape[0])
    rows = buffers.get("rows", (stop - start, donor.shape[1]), product_dtype)
    np.copyto(rows, donor[start:stop])
    product = buffers.get("product", rows.shape, product_dtype)
    out[start:stop] = np.matmul(rows, transform, out=product)
  return out


def propagate_embedding_rows(
    base: np.ndarray,
    instruct: np.ndarray,
    donor: np.ndarray,
    vocab_map: VocabularyMap,
    *,
    method: str = "conversion",
    special_rows: Sequence[tuple[int, int]] = (),
    num_rows: int | None = None,
    keep_instruct_rows: bool = False,
    solver: str = "auto",
    product_dtype=np.float64,
) -> np.ndarray:
  """Instruct-model rows for the new vocabulary, one matrix in [vocab, embed] layout.

  `base`, `instruct`: old-vocabulary matrices (rows past the old tokenizer are ignored);
  `donor`: the new-vocabulary matrix after continual pre-training of the base.
  `special_rows`: (new id, instruct id) pairs whose rows are copied from `instruct` (the
  instruct model's chat tokens, appended past the donor when new id >= its rows);
  `keep_instruct_rows` (**open**, default off as in LEP): tokens of the old vocabulary keep the
  instruct model's own rows instead of the propagated donor rows.
  Returned in the instruct matrix's dtype.
  """
  if method not in PROPAGATION_METHODS:
    raise ValueError(f"method must be one of {PROPAGATION_METHODS}, got {method!r}")
  base, instruct, donor = np.asarray(base), np.asarray(instruct), np.asarray(donor)
  if method == "swap":
    rows = donor.copy()
  else:
    transform = fit_propagation_map(
        base, instruct, vocab_map, method, solver=solver, product_dtype=product_dtype
    )
    rows = apply_propagation_map(donor, transform, product_dtype=product_dtype)
  total = max([num_rows or rows.shape[0], rows.shape[0]] + [n + 1 for n, _ in special_rows])
  if total > rows.shape[0]:
    rows = np.concatenate([rows, np.zeros((total - rows.shape[0], rows.shape[1]), rows.dtype)])
  if keep_instruct_rows:
    new_ids, old_ids = vocab_map.kept_pairs()
    rows[new_ids] = instruct[old_ids]
  for new_id, instruct_id in special_rows:
    rows[new_id] = instruct[instruct_id]
  return rows.astype(instruct.dtype, copy=False)


def propagate_embedding_params(
    base_params: Any, instruct_params: Any, donor_params: Any, vocab_map: VocabularyMap, **kwargs
) -> dict:
  """The instruct param tree with its embeddings propagated from the donor (LEP, arXiv:2412.21140).

  Trees are langshift Llama params; only `embed_tokens/embedding` and `lm_head/kernel` change
  (the latter only when untied; tied models propagate their single matrix). `kwargs` as in
  `propagate_embedding_rows`.
  """
  if param_tree.is_tied(instruct_params) != param_tree.is_tied(donor_params):
    raise ValueError("donor and instruct models disagree on tied embeddings")
  base = param_tree.embedding_matrices(base_params)
  instruct = param_tree.embedding_matrices(instruct_params)
  donor = param_tree.embedding_matrices(donor_params)
  new = {
      name: propagate_embedding_rows(base[name], instruct[name], donor[name], vocab_map, **kwargs)
      for name in instruct
  }
  return param_tree.replace_embedding_matrices(instruct_params, new)
