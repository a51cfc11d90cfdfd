"""Start-up settings for JAX's accelerator plugins on machines that lack their accelerator.

The `aot` extra installs libtpu and the CUDA plugin on every machine, so that any machine can
compile for TPUs and GPUs (`langshift.aot`). JAX loads both at start-up whenever JAX_PLATFORMS is
unset. On a machine without an NVIDIA GPU the CUDA plugin's version check then fails and JAX
prints its traceback ("Jax plugin configuration error ... Unable to load CUDA"), although JAX
skips the CUDA backend anyway when no GPU device node exists. Restricting JAX_PLATFORMS instead
would be wrong: on a TPU VM or a GPU node the accelerator must be found without configuration,
and a container may show its TPU to libtpu but not in a PCI scan. So only that check is skipped,
and only where JAX itself will not use CUDA.
"""

from __future__ import annotations

import os

# The device nodes by which JAX decides that a visible NVIDIA GPU exists
# (jax/_src/hardware_utils.py, has_visible_nvidia_gpu).
NVIDIA_DEVICE_NODES = ("/dev/nvidia0", "/dev/nvidiactl", "/dev/dxg")


def quiet_absent_cuda() -> None:
  """JAX_SKIP_CUDA_CONSTRAINTS_CHECK=1 when JAX will not use CUDA here (no NVIDIA device node);
  nothing when JAX_PLATFORMS is set (the plugin then checks only when CUDA is asked for)."""
  if os.environ.get("JAX_PLATFORMS"):
    return
  if not any(os.path.exists(node) for node in NVIDIA_DEVICE_NODES):
    os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")
