"""Compile targets by the names users type (`v5e-16`, `h100x8`) and their chips.

A TPU target is a `jax.experimental.topologies` topology: its name is the slice's physical shape
(`v5e:4x4`, not `v5e-16`; the same translation as MaxText's `accelerator_to_spec_map`), v4 and v5p
chips take the `megacore` chip config (two TensorCores driven as one device), v5e and v6e
`default`. v4-N and v5p-N count TensorCores (two per chip), v5e-N and v6e-N count chips. A GPU
target is `<nodes> x <GPUs per node>` of one card whose XLA target description (`GPU_SPECS`) lets
the CUDA plugin compile without a GPU.
"""

from __future__ import annotations

import dataclasses
import os

GIB = 2.0**30


@dataclasses.dataclass(frozen=True)
class Chip:
  """One accelerator chip: memory, dense bf16 peak, and where both figures come from."""

  name: str
  hbm_bytes: int
  peak_flops: float
  source: str


# Vendor figures per chip (HBM capacity and dense bf16 peak).
CHIPS = {
    "v4": Chip("TPU v4", 32 * 2**30, 275e12, "cloud.google.com/tpu/docs/v4"),
    "v5e": Chip("TPU v5e", 16 * 2**30, 197e12, "cloud.google.com/tpu/docs/v5e"),
    "v5p": Chip("TPU v5p", 95 * 2**30, 459e12, "cloud.google.com/tpu/docs/v5p"),
    "v6e": Chip("TPU v6e", 32 * 2**30, 918e12, "cloud.google.com/tpu/docs/v6e"),
    # 80 GB HBM3 as the driver reports it (84,942,979,072 B); 989 TFLOP/s dense bf16 (NVIDIA
    # H100 SXM datasheet).
    "h100": Chip("NVIDIA H100 80GB HBM3", 84_942_979_072, 989e12, "NVIDIA H100 SXM datasheet"),
}


@dataclasses.dataclass(frozen=True)
class Target:
  """A slice or GPU cluster: what `get_topology_desc` needs to make compile-only devices."""

  name: str
  chip: str  # key of CHIPS
  platform: str  # "tpu" | "cuda"
  topology: str  # TPU: "v5e:4x4"; CUDA: "<slices>x<hosts>x<gpus per host>"
  chip_config: str = "default"
  chips_per_host: tuple[int, int, int] = (2, 2, 1)
  chips: int = 0

  @property
  def hbm_bytes(self) -> int:
    return CHIPS[self.chip].hbm_bytes

  @property
  def devices_per_host(self) -> int:
    if self.platform == "cuda":
      return int(self.topology.split("x")[-1])
    a, b, c = self.chips_per_host
    return min(a * b * c, self.chips)


def _tpu(name, chip, shape, chip_config="default", per_host=(2, 2, 1)):
  dims = [int(x) for x in shape.split("x")]
  chips = 1
  for d in dims:
    chips *= d
  return Target(name, chip, "tpu", f"{chip}:{shape}", chip_config, per_host, chips)


def _gpu(name, chip, nodes, per_node):
  return Target(name, chip, "cuda", f"1x{nodes}x{per_node}", chips=nodes * per_node)


TARGETS = {
    t.name: t
    for t in (
        _tpu("v4-8", "v4", "2x2x1", "megacore"),
        _tpu("v4-16", "v4", "2x2x2", "megacore"),
        _tpu("v4-32", "v4", "2x2x4", "megacore"),
        _tpu("v4-64", "v4", "2x4x4", "megacore"),
        _tpu("v4-128", "v4", "4x4x4", "megacore"),
        _tpu("v5e-4", "v5e", "2x2"),
        _tpu("v5e-16", "v5e", "4x4"),
        _tpu("v5e-32", "v5e", "4x8"),
        _tpu("v5e-64", "v5e", "8x8"),
        _tpu("v5e-128", "v5e", "8x16"),
        _tpu("v5e-256", "v5e", "16x16"),
        _tpu("v5p-8", "v5p", "2x2x1", "megacore"),
        _tpu("v5p-32", "v5p", "2x2x4", "megacore"),
        _tpu("v5p-64", "v5p", "2x4x4", "megacore"),
        _tpu("v5p-128", "v5p", "4x4x4", "megacore"),
        _tpu("v6e-4", "v6e", "2x2"),
        _tpu("v6e-16", "v6e", "4x4"),
        _tpu("v6e-64", "v6e", "8x8"),
        _tpu("v6e-256", "v6e", "16x16"),
        _gpu("h100x1", "h100", 1, 1),
        _gpu("h100x8", "h100", 1, 8),
        _gpu("h100x8x2", "h100", 2, 8),
        _gpu("h100x8x4", "h100", 4, 8),
    )
}

# gcloud's names for the same slices (launch/tpu/lib.sh accelerator_type).
ALIASES = {f"v5litepod-{n}": f"v5e-{n}" for n in (4, 16, 32, 64, 128, 256)}


def get_target(name: str) -> Target:
  """The target called `name`; an unknown name lists the known ones."""
  name = ALIASES.get(name, name)
  if name not in TARGETS:
    raise ValueError(f"--target={name} is not a known target; known: {', '.join(TARGETS)}")
  return TARGETS[name]


def gpu_memory_fraction() -> float:
  """The share of a GPU's memory JAX's allocator takes (XLA_PYTHON_CLIENT_MEM_FRACTION, 0.75
  by default; JAX docs "GPU memory allocation"): what a run on the card can actually use."""
  if os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE", "").lower() == "false":
    return 1.0
  return float(os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.75"))


def usable_bytes(target: Target) -> int:
  """Memory per chip a program may use: the TPU's HBM (the TPU compiler itself refuses more),
  the GPU allocator's share of the card."""
  if target.platform == "cuda":
    return int(target.hbm_bytes * gpu_memory_fraction())
  return target.hbm_bytes


# The XLA GPU target description of an H100 SXM (field names of XLA's GpuTargetConfigProto):
# enough for the CUDA compiler to schedule, fuse and size buffers without a device.
H100_SPEC = """
gpu_device_info {
  threads_per_block_limit: 1024
  threads_per_warp: 32
  shared_memory_per_block: 49152
  shared_memory_per_block_optin: 232448
  shared_memory_per_core: 233472
  threads_per_core_limit: 2048
  core_count: 132
  fpus_per_core: 128
  block_dim_limit_x: 2147483647
  block_dim_limit_y: 65535
  block_dim_limit_z: 65535
  memory_bandwidth: 3352320000000
  l2_cache_size: 52428800
  clock_rate_ghz: 1.98
  device_memory_size: 84942979072
  cuda_compute_capability { major: 9 minor: 0 }
  registers_per_core_limit: 65536
  registers_per_block_limit: 65536
}
platform_name: "CUDA"
dnn_version_info { major: 9 minor: 8 patch: 0 }
device_description_str: "NVIDIA H100 80GB HBM3"
"""
GPU_SPECS = {"h100": H100_SPEC}


def host_target(target: Target) -> Target:
  """One host of `target` as a target of its own: where a recipe's local roles run (each host
  holds its own replica, `langshift/recipes/roles.py`). A program over a sub-mesh of a larger TPU
  topology does not compile (libtpu expects the topology's device ids), so local programs are
  compiled for the host's own chips."""
  if target.chips <= target.devices_per_host:
    return target
  if target.platform == "cuda":
    return dataclasses.replace(
        target,
        name=f"{target.name} (one node)",
        topology=f"1x1x{target.devices_per_host}",
        chips=target.devices_per_host,
    )
  a, b, c = target.chips_per_host
  dims = target.topology.split(":")[1].count("x") + 1
  shape = "x".join(str(d) for d in (a, b, c)[:dims])
  return dataclasses.replace(
      target,
      name=f"{target.name} (one host)",
      topology=f"{target.chip}:{shape}",
      chips=a * b * c,
  )


def topology_devices(target: Target, num_slices: int = 1) -> list:
  """Compile-only devices of `target` (`num_slices` TPU slices joined over DCN)."""
  from jax.experimental import topologies  # pylint: disable=import-outside-toplevel

  if num_slices < 1:
    raise ValueError(f"--num_slices={num_slices} must be at least 1")
  if target.platform == "tpu":
    topo = topologies.get_topology_desc(
        platform="tpu",
        topology_name=target.topology,
        chip_config_name=target.chip_config,
        chips_per_host_bounds=target.chips_per_host,
        num_slices=num_slices,
    )
  else:
    if num_slices != 1:
      raise ValueError(f"--num_slices={num_slices}: GPU targets name their nodes ({target.name})")
    try:
      topo = topologies.get_topology_desc(
          platform="cuda", target_config=GPU_SPECS[target.chip], topology=target.topology
      )
    except Exception as e:  # the plugin is missing or refuses the description
      raise RuntimeError(
          f"{target.name}: no CUDA compiler (install the `aot` extra: jax-cuda12-plugin): {e}"
      ) from e
  return list(topo.devices)
