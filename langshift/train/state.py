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

from langshift.models.config import ModelConfig
from langshift.models.llama import LlamaDecoder, abstract_params, init_params
from langshift.parallel import sharding as sharding_lib


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array


def _fresh_state(params, rng, tx):
  # On boxed params optax maps over the boxes' values, so Adam's moments inherit the params'
  # logical names.
  return TrainState(
      step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=rng
  )


def _model_config(model_or_config: LlamaDecoder | ModelConfig) -> ModelConfig:
  return model_or_config.config if isinstance(model_or_config, LlamaDecoder) else model_or_config


def state_shardings(
    model_or_config: LlamaDecoder | ModelConfig, tx: optax.GradientTransformation, mesh, rules
):
  """(abstract unboxed state, NamedSharding tree) without allocating anything."""
  boxed = jax.eval_shape(
      functools.partial(_fresh_state, tx=tx),
      abstract_params(_model_config(model_or_config)),
      jax.random.PRNGKey(0),
  )
  return nn.unbox(boxed), sharding_lib.logical_shardings(boxed, mesh, rules)


def init_train_state(
    model_or_config: LlamaDecoder | ModelConfig,
    tx: optax.GradientTransformation,
    mesh,
    rules,
    rng,
    shardings,
):
  """Random init, created sharded."""
  config = _model_config(model_or_config)
  init = jax.jit(
      lambda r: nn.unbox(_fresh_state(init_params(config, r), r, tx)), out_shardings=shardings
  )
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding_lib.rules_from_config(rules)):
    return init(rng)


def state_from_params(params, tx: optax.GradientTransformation, rng, shardings):
  """Fresh optimizer state at step 0 around already-sharded params (init_from_hf)."""
  return jax.jit(functools.partial(_fresh_state, tx=tx), out_shardings=shardings)(params, rng)


def count_params(tree) -> int:
  return sum(int(x.size) for x in jax.tree.leaves(tree))
