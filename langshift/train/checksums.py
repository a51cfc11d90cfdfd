"""Per-array checksums of a train state, computed on its devices, that a restore is checked against.

A checkpoint records, for every array of the state, its dtype, shape and a 32-bit checksum of its
bits: the sum over elements of `word * (2 * position + 1)` modulo 2**32, where `word` is the
element's bit pattern widened to uint32 and `position` its row-major index. The odd weights make
any change of a single element, and any move of values between positions, change the sum; two
compensating changes slip through with probability about 2**-32. Integer addition is exact and
associative, so the checksum is the same however the array is sharded (a checkpoint restored on
another mesh verifies alike), and it is computed where the array lives: one jitted reduction
over the state, no copy to the host.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from langshift.parallel.host_transfer import to_host

ALGORITHM = "uint32 sum of bits * (2 * row-major index + 1)"

_WORDS = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}


def _words(x: jax.Array) -> jax.Array:
  if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  if x.dtype == jnp.bool_:
    x = x.astype(jnp.uint8)
  # 8-byte elements become two words each (a trailing axis of 2).
  return jax.lax.bitcast_convert_type(x, _WORDS[x.dtype.itemsize]).astype(jnp.uint32)


def _checksum(x: jax.Array) -> jax.Array:
  words = _words(x)
  position = jnp.zeros(words.shape, jnp.uint32)
  stride = 1
  for axis in reversed(range(words.ndim)):
    # uint32 arithmetic wraps: arrays of more than 2**32 elements still get odd weights.
    weight = jnp.uint32(stride % 2**32)
    position = position + jax.lax.broadcasted_iota(jnp.uint32, words.shape, axis) * weight
    stride *= words.shape[axis]
  return jnp.sum(words * (position * jnp.uint32(2) + jnp.uint32(1)), dtype=jnp.uint32)


@jax.jit
def _checksums(leaves):
  return jnp.stack([_checksum(x) for x in leaves]) if leaves else jnp.zeros((0,), jnp.uint32)


def leaf_name(path) -> str:
  """`params/layers/mlp/gate_proj/kernel` from a jax tree path."""
  return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def state_checksums(state: Any) -> dict[str, list]:
  """{array name: [checksum, dtype, shape]} of every array leaf (collective on multi-host)."""
  named = jax.tree_util.tree_flatten_with_path(state)[0]
  arrays = [(leaf_name(p), x) for p, x in named if isinstance(x, jax.Array)]
  sums = np.asarray(to_host(_checksums([x for _, x in arrays])))
  return {
      name: [int(s), str(x.dtype), list(x.shape)] for (name, x), s in zip(arrays, sums, strict=True)
  }


def mismatches(recorded: dict[str, list], state: Any) -> list[str]:
  """Names of the arrays of `state` whose checksum differs from the recorded one. An array
  restored into another dtype (the config changed it) cannot be compared and is left out."""
  current = state_checksums(state)
  bad = []
  for name, (checksum, dtype, shape) in recorded.items():
    now = current.get(name)
    if now is None or now[1] != dtype or now[2] != list(shape):
      continue
    if now[0] != checksum:
      bad.append(name)
  return bad
