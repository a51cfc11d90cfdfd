"""Reading (possibly multi-host) device arrays back into host numpy arrays.

In a multi-host job an array sharded over the mesh spans devices of other processes, so
`np.asarray`/`jax.device_get` refuse it; every process has to take part in an all-gather and
then holds the whole value. Fully replicated arrays are read from a local shard.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils


def to_host(tree: Any) -> Any:
  """numpy copies of every array leaf. Collective when a leaf is sharded across processes:
  call it on every process, in the same order."""

  def one(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      if x.sharding.is_fully_replicated:
        return np.asarray(x.addressable_data(0))
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))

  return jax.tree.map(one, tree)


def to_global(
    batch: dict[str, np.ndarray], sharding: jax.sharding.Sharding, keys=None
) -> dict[str, jax.Array]:
  """This process's rows of a batch -> global arrays in `sharding` (every host calls it with its
  own share, as the input pipeline produces them). `keys` selects the fields to send."""
  keys = batch.keys() if keys is None else keys
  return {k: jax.make_array_from_process_local_data(sharding, batch[k]) for k in keys}
