"""Selection of documents by perplexity: InsCP (Chen & Lee 2024, "InstructionCP: A fast approach
to transfer Large Language Models into target language", arXiv:2405.20175) trained on
low-perplexity data.

The scores come from outside this module (a record field or a file aligned with the records;
`langshift.evaluation.scoring.LocalScorer.token_nll` gives a text's NLL, but no job yet scores a
whole corpus); this keeps the documents whose score lies in [min_perplexity, max_perplexity].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from etils import epath

from langshift.data.formatting import record_field


def select_by_perplexity(
    scores: Sequence[float],
    *,
    max_perplexity: float | None = None,
    min_perplexity: float | None = None,
) -> np.ndarray:
  """Indices (ascending) of the documents to keep; NaN scores are dropped."""
  scores = np.asarray(scores, np.float64)
  keep = ~np.isnan(scores)
  if max_perplexity is not None:
    keep &= scores <= max_perplexity
  if min_perplexity is not None:
    keep &= scores >= min_perplexity
  return np.flatnonzero(keep)


def load_scores(path: str) -> np.ndarray:
  """Scores aligned with a source's records: a `.npy` array or one float per line."""
  if path.endswith(".npy"):
    with epath.Path(path).open("rb") as f:
      return np.load(f).astype(np.float64)
  lines = epath.Path(path).read_text().split()
  return np.asarray([float(x) for x in lines], np.float64)


def scores_from_records(source, field: str) -> np.ndarray:
  """Reads `field` of every record of a source (a full pass; for scores stored in records)."""
  out = np.empty(len(source), np.float64)
  for i in range(len(source)):
    where, record = source[i]
    out[i] = np.nan if record is None else float(record_field(record, field, where, (int, float)))
  return out
