"""Device mesh with axes (data, fsdp, tensor), built from ICI and DCN sizes in the config.

ICI sizes shard within a slice (fast interconnect); DCN sizes across slices (multi-slice TPU or
multi-node GPU). One size per axis may be -1: it takes whatever devices remain.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.experimental import mesh_utils

MESH_AXES = ("data", "fsdp", "tensor")


def fill_axis_sizes(sizes: Mapping[str, int], total: int, what: str) -> tuple[int, ...]:
  """Resolves one -1 entry so the product equals `total`; validates the rest."""
  unknown = set(sizes) - set(MESH_AXES)
  if unknown:
    raise ValueError(f"mesh.{what}: unknown axis {sorted(unknown)[0]!r}; axes are {MESH_AXES}")
  values = [int(sizes.get(a, 1)) for a in MESH_AXES]
  if values.count(-1) > 1:
    raise ValueError(f"mesh.{what}: at most one axis may be -1, got {dict(zip(MESH_AXES, values))}")
  known = math.prod(v for v in values if v != -1)
  if -1 in values:
    if total % known:
      raise ValueError(f"mesh.{what}: {total} devices do not divide by {known}")
    values[values.index(-1)] = total // known
  if math.prod(values) != total:
    raise ValueError(
        f"mesh.{what}: axis sizes {dict(zip(MESH_AXES, values))} need "
        f"{math.prod(values)} devices, have {total}"
    )
  return tuple(values)


def local_devices(num_devices: int = 0) -> list:
  """This process's devices, or the first `num_devices` of them (0: all): where a model that
  each host holds on its own (a generation role, a scorer) is loaded."""
  devices = jax.local_devices()
  return devices[:num_devices] if num_devices else devices


def create_mesh(
    ici: Mapping[str, int],
    dcn: Mapping[str, int] | None = None,
    devices: Sequence[jax.Device] | None = None,
) -> jax.sharding.Mesh:
  devices = list(devices if devices is not None else jax.devices())
  dcn = dict(dcn or {})
  num_slices = math.prod(fill_axis_sizes(dcn, _slice_count(devices), "dcn")) if dcn else 1
  dcn_shape = fill_axis_sizes(dcn, num_slices, "dcn") if dcn else (1,) * len(MESH_AXES)
  ici_shape = fill_axis_sizes(ici, len(devices) // num_slices, "ici")
  if num_slices > 1:
    arr = mesh_utils.create_hybrid_device_mesh(ici_shape, dcn_shape, devices)
  else:
    try:
      arr = mesh_utils.create_device_mesh(ici_shape, devices)
    except (ValueError, NotImplementedError, AssertionError):
      arr = np.asarray(devices).reshape(ici_shape)  # CPU / unusual topologies.
  return jax.sharding.Mesh(arr, MESH_AXES)


def _slice_count(devices) -> int:
  return len({getattr(d, "slice_index", 0) for d in devices})
