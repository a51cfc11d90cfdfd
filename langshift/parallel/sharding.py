"""Logical axis names -> mesh axes, declared once; shardings for params, state and batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

# Parameters: FSDP shards the embed dimension, tensor parallelism heads / mlp / vocab.
# Activations: batch over data x fsdp, heads and mlp over tensor.
DEFAULT_LOGICAL_RULES: tuple[tuple[str, Any], ...] = (
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("layers", None),
    ("norm", None),
    ("activation_batch", ("data", "fsdp")),
    ("activation_length", None),
    ("activation_embed", None),
    ("activation_heads", "tensor"),
    ("activation_kv_heads", "tensor"),
    ("activation_head_dim", None),
    ("activation_mlp", "tensor"),
    ("activation_vocab", "tensor"),
    ("cache_batch", ("data", "fsdp")),
)

BATCH_SPEC = P(("data", "fsdp"), None)


def rules_from_config(rules: Sequence[Sequence[Any]] | None):
  """Config rules are lists (ConfigDicts hold no tuples of tuples); normalise to tuples."""
  if rules is None:
    return DEFAULT_LOGICAL_RULES
  out = []
  for name, axes in rules:
    out.append((name, tuple(axes) if isinstance(axes, (list, tuple)) else axes))
  return tuple(out)


def logical_shardings(boxed_tree, mesh: jax.sharding.Mesh, rules):
  """NamedShardings on `mesh` for each leaf of a (possibly abstract) boxed tree.

  Leaves boxed in `nn.LogicallyPartitioned` map their logical axis names through `rules` (as
  given by a config or `DEFAULT_LOGICAL_RULES`); any other leaf is replicated.
  """
  logical = nn.get_partition_spec(boxed_tree)
  return nn.logical_to_mesh_sharding(logical, mesh, rules_from_config(rules))


def logical_constraint(
    x: jax.Array, names: Sequence[str | None], mesh: jax.sharding.Mesh, rules
) -> jax.Array:
  """`x` constrained to the sharding its logical axis `names` get under `rules` on `mesh`.

  For code that runs outside `nn.logical_axis_rules` (flax's `nn.with_logical_constraint` reads
  the rules and mesh from that context instead).
  """
  return jax.lax.with_sharding_constraint(
      x, logical_shardings(nn.LogicallyPartitioned(x, tuple(names)), mesh, rules)
  )


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, BATCH_SPEC)


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())
