"""Start one command as several JAX processes on this machine (a simulated multi-host job).

Each process gets `devices_per_process` CPU devices and the JAX_COORDINATOR_ADDRESS /
JAX_NUM_PROCESSES / JAX_PROCESS_ID variables that `maybe_initialize_distributed` reads; JAX then
forms one mesh over all of them with gloo collectives.
"""

import os
import socket
import subprocess

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def start(args, num_processes=2, devices_per_process=4, extra_env=None):
  """`extra_env[i]`: variables for process i only (e.g. a LANGSHIFT_FAULT crash point)."""
  port = free_port()
  procs = []
  for process_id in range(num_processes):
    env = dict(
        os.environ,
        JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
        JAX_NUM_PROCESSES=str(num_processes),
        JAX_PROCESS_ID=str(process_id),
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_per_process}",
        **(extra_env[process_id] if extra_env else {}),
    )
    procs.append(
        subprocess.Popen(
            args, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    )
  return procs


def wait(procs, timeout=600):
  """[(returncode, stdout, stderr)] of every process; all are killed on timeout."""
  try:
    outs = [p.communicate(timeout=timeout) for p in procs]
  finally:
    for p in procs:
      p.kill()
  return [(p.returncode, out, err) for p, (out, err) in zip(procs, outs)]


def run(args, timeout=600, **kwargs):
  return wait(start(args, **kwargs), timeout=timeout)
