"""Analytic training FLOPs and device peaks for MFU.

Convention (PaLM appendix B): a token costs 6·N FLOPs for fwd + bwd, N = parameters that take part
in matmuls (the input embedding is a gather and does not count; the output projection does, also
when tied), plus attention scores and values: 12·L·H·d_head·T per token over a full T×T window,
halved for causal attention (only the lower triangle is computed by an efficient kernel), and
capped by the sliding window. Frozen parameters are counted as if trained: MFU states model FLOPs,
not the smaller work an embedding-only step actually does.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp

from langshift.models.config import ModelConfig

# Dense bf16 peak per chip (vendor figures).
PEAK_FLOPS = {
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v5": 459e12,
    "TPU v6 lite": 918e12,
    "TPU v6e": 918e12,
    "NVIDIA H100": 989e12,
    "NVIDIA H200": 989e12,
    "NVIDIA A100": 312e12,
    "NVIDIA L4": 121e12,
}


def matmul_params(cfg: ModelConfig) -> int:
  n = cfg.num_params(include_embeddings=False) - cfg.num_layers * 2 * cfg.hidden_size
  return n - cfg.hidden_size + cfg.vocab_size * cfg.hidden_size  # norms out, lm_head in


def train_flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
  window = min(seq_len, cfg.sliding_window or seq_len)
  attention = 12 * cfg.num_layers * cfg.num_heads * cfg.dim_per_head * window / 2
  return 6.0 * matmul_params(cfg) + attention


def measure_matmul_peak(dtype=jnp.float32, n: int = 2048, repeats: int = 5) -> float:
  """FLOP/s of a jit-compiled square matmul on the default device (best of `repeats`)."""
  a = jnp.ones((n, n), dtype)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    f(a).block_until_ready()
    best = min(best, time.perf_counter() - t)
  return 2 * n**3 / best


def device_peak_flops(override: float = 0.0) -> float:
  if override:
    return float(override)
  kind = jax.devices()[0].device_kind
  for name, peak in PEAK_FLOPS.items():
    if kind.startswith(name):
      return peak
  if jax.default_backend() == "cpu":
    # CPU devices share the host's cores: measure the whole machine, split per simulated device.
    return measure_matmul_peak() / jax.device_count()
  return 0.0
