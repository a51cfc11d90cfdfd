"""Train state and its shape-first, sharded initialisation.

Initialisation precedence (documented beside the config keys in `langshift/train/config.py`):
an existing checkpoint in the workdir resumes the full state; else `init_from_hf` loads params
only (fresh optimizer, step 0); else random init. In every case shapes come first
(`jax.eval_shape`), shardings come from the logical rules, and arrays are created directly in
their shardings by `jax.jit(..., out_shardings=...)`.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from langshift.models.llama import LlamaDecoder


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array


def _init_boxed(model, tx, rng):
  params = model.init(rng, jnp.ones((1, 1), jnp.int32))["params"]
  # Optax maps over the boxed leaves, so Adam's moments inherit the params' logical names.
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    rng=rng)


def state_shardings(model: LlamaDecoder, tx: optax.GradientTransformation, mesh, rules):
  """(abstract unboxed state, NamedSharding tree) without allocating anything."""
  boxed = jax.eval_shape(functools.partial(_init_boxed, model, tx), jax.random.PRNGKey(0))
  logical = nn.get_partition_spec(boxed)
  shardings = nn.logical_to_mesh_sharding(logical, mesh, rules)
  return nn.unbox(boxed), shardings


def init_train_state(model, tx, mesh, rules, rng, shardings):
  """Random init, created sharded."""
  init = jax.jit(lambda r: nn.unbox(_init_boxed(model, tx, r)), out_shardings=shardings)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    return init(rng)


def state_from_params(params, tx, rng, shardings):
  """Fresh optimizer state at step 0 around already-sharded params (init_from_hf)."""
  make = jax.jit(lambda p, r: TrainState(step=jnp.zeros((), jnp.int32), params=p,
                                         opt_state=tx.init(p), rng=r),
                 out_shardings=shardings)
  return make(params, rng)


def count_params(tree) -> int:
  return sum(int(x.size) for x in jax.tree.leaves(tree))
