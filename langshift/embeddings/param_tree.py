"""Reading and writing the embedding matrices of a langshift Llama param tree as [vocab, embed].

langshift stores `embed_tokens/embedding` as [vocab, embed] and `lm_head/kernel` as
[embed, vocab] (absent when the embeddings are tied); the transforms in this package work on
rows, one per token, so the output embedding is transposed on the way in and out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

EMBED = ("embed_tokens", "embedding")
LM_HEAD = ("lm_head", "kernel")


def _unboxed(leaf):
  # Flax's LogicallyPartitioned boxes carry the array in `.value`.
  return leaf.value if hasattr(leaf, "value") and hasattr(leaf, "names") else leaf


def embedding_matrices(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """{'embed': [vocab, embed], 'lm_head': [vocab, embed] if untied} as numpy arrays."""
  params = params.get("params", params)
  matrices = {"embed": np.asarray(_unboxed(params[EMBED[0]][EMBED[1]]))}
  if LM_HEAD[0] in params:
    matrices["lm_head"] = np.asarray(_unboxed(params[LM_HEAD[0]][LM_HEAD[1]])).T
  return matrices


def is_tied(params: Mapping[str, Any]) -> bool:
  return LM_HEAD[0] not in params.get("params", params)


def replace_embedding_matrices(
    params: Mapping[str, Any],
    matrices: Mapping[str, np.ndarray],
) -> dict:
  """A shallow copy of `params` with the given row-layout matrices written back."""
  if "params" in params and EMBED[0] not in params:
    return {**params, "params": replace_embedding_matrices(params["params"], matrices)}
  out = dict(params)
  if "embed" in matrices:
    out[EMBED[0]] = {**params[EMBED[0]], EMBED[1]: matrices["embed"]}
  if "lm_head" in matrices:
    out[LM_HEAD[0]] = {
        **params.get(LM_HEAD[0], {}),
        LM_HEAD[1]: np.ascontiguousarray(matrices["lm_head"].T),
    }
  return out
