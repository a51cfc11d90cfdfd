"""Selection of documents by perplexity: InsCP (Chen & Lee 2024, "InstructionCP: A fast approach
to transfer Large Language Models into target language", arXiv:2405.20175) trained on
low-perplexity data.

The scores come from a record field or a file aligned with the records, written by the corpus
scoring job (`python -m langshift.score`); this keeps the documents whose score lies in
[min_perplexity, max_perplexity].
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


def load_scores(path: str, num_records: int | None = None) -> np.ndarray:
  """Scores aligned with a source's records: a `.npy` array or one float per line.

  A NaN score (a record that was never scored), an unparsable line, or a count other than
  `num_records` is a one-line error naming the file; unscorable records carry +inf (never kept
  under a `max_perplexity`).
  """
  if path.endswith(".npy"):
    with epath.Path(path).open("rb") as f:
      scores = np.load(f).astype(np.float64).reshape(-1)
  else:
    lines = epath.Path(path).read_text().split()
    try:
      scores = np.asarray([float(x) for x in lines], np.float64)
    except ValueError as e:
      raise ValueError(f"perplexity scores {path}: {e}") from None
  nan = np.flatnonzero(np.isnan(scores))
  if len(nan):
    raise ValueError(
        f"perplexity scores {path}: {len(nan)} NaN scores (first at record {nan[0]}); "
        "score the corpus again (python -m langshift.score)"
    )
  if num_records is not None and len(scores) != num_records:
    raise ValueError(
        f"perplexity scores {path} hold {len(scores)} scores for a source of {num_records} "
        "records: they must align with the source's records (same files, same qa_split)"
    )
  return scores


def scores_from_records(source, field: str) -> np.ndarray:
  """Reads `field` of every record of a source (a full pass; for scores stored in records)."""
  out = np.empty(len(source), np.float64)
  for i in range(len(source)):
    where, record = source[i]
    out[i] = np.nan if record is None else float(record_field(record, field, where, (int, float)))
  return out
