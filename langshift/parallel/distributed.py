"""Multi-host start-up: `jax.distributed.initialize()` where a cluster is detected, else no-op."""

from __future__ import annotations

import os

import jax
from absl import logging

# Set by TPU pod VMs, SLURM, Open MPI, or explicitly by the launcher (launch/*.sh).
_CLUSTER_ENV = ("JAX_COORDINATOR_ADDRESS", "TPU_WORKER_HOSTNAMES", "SLURM_NTASKS",
                "OMPI_COMM_WORLD_SIZE")


def maybe_initialize_distributed() -> bool:
  hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
  multi = any(os.environ.get(k) for k in _CLUSTER_ENV if k != "TPU_WORKER_HOSTNAMES")
  multi = multi or len([h for h in hosts.split(",") if h]) > 1
  if not multi:
    return False
  jax.distributed.initialize()
  logging.info("jax.distributed: process %d of %d", jax.process_index(), jax.process_count())
  return True
