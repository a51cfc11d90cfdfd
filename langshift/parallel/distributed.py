"""Multi-host start-up: `jax.distributed.initialize()` where a cluster is detected, else no-op.

TPU pods, SLURM and Open MPI are detected by JAX itself. Anything else (a launcher of your own,
or several processes on one machine, as the multi-process tests do) sets
JAX_COORDINATOR_ADDRESS=host:port, JAX_NUM_PROCESSES and JAX_PROCESS_ID for every process.
"""

from __future__ import annotations

import os

import jax
from absl import logging

_CLUSTER_ENV = (
    "JAX_COORDINATOR_ADDRESS",
    "TPU_WORKER_HOSTNAMES",
    "SLURM_NTASKS",
    "OMPI_COMM_WORLD_SIZE",
)


def maybe_initialize_distributed() -> bool:
  hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
  multi = any(os.environ.get(k) for k in _CLUSTER_ENV if k != "TPU_WORKER_HOSTNAMES")
  multi = multi or len([h for h in hosts.split(",") if h]) > 1
  if not multi:
    return False
  if "JAX_CPU_COLLECTIVES_IMPLEMENTATION" not in os.environ:
    # CPU processes need a collectives backend to form one mesh; TPU/GPU ignore this.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
      num_processes=_env_int("JAX_NUM_PROCESSES"), process_id=_env_int("JAX_PROCESS_ID")
  )
  logging.info("jax.distributed: process %d of %d", jax.process_index(), jax.process_count())
  return True


def _env_int(name: str) -> int | None:
  value = os.environ.get(name)
  if value is None or value == "":
    return None
  try:
    return int(value)
  except ValueError:
    raise ValueError(f"environment variable {name}={value!r}: expected an integer") from None
