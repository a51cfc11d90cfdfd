"""Rotary position embeddings (Su et al.) in the Hugging Face "rotate half" layout.

The layout matters: HF checkpoints store q/k projections for the half-split rotation, so using the
same layout lets weights be imported without permuting rows. Frequencies are computed in float32
exactly as `transformers.modeling_rope_utils` does, so logits match to fp32 round-off.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from langshift.models.config import ModelConfig


def inverse_frequencies(config: ModelConfig) -> np.ndarray:
  """Per-pair inverse frequencies [head_dim // 2], with the configured rope scaling applied."""
  dim = config.dim_per_head
  exponents = np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / np.float32(dim)
  inv_freq = (1.0 / (np.float32(config.rope_theta) ** exponents)).astype(np.float32)
  scaling = config.rope_scaling_dict
  if config.rope_type == "linear":
    inv_freq = inv_freq / np.float32(scaling["factor"])
  elif config.rope_type == "llama3":
    inv_freq = _llama3_scaling(inv_freq, scaling)
  return inv_freq.astype(np.float32)


def _llama3_scaling(inv_freq: np.ndarray, s: dict) -> np.ndarray:
  """Llama-3.1 frequency-dependent scaling (Meta's reference `apply_scaling`)."""
  factor = np.float32(s["factor"])
  low, high = np.float32(s["low_freq_factor"]), np.float32(s["high_freq_factor"])
  old_len = np.float32(s["original_max_position_embeddings"])
  low_freq_wavelen, high_freq_wavelen = old_len / low, old_len / high
  wavelen = np.float32(2 * math.pi) / inv_freq
  scaled = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
  smooth = (old_len / wavelen - low) / (high - low)
  smoothed = (1 - smooth) * scaled / factor + smooth * scaled
  medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
  return np.where(medium, smoothed, scaled).astype(np.float32)


def apply_rope(x: jnp.ndarray, positions: jnp.ndarray, inv_freq: np.ndarray) -> jnp.ndarray:
  """Rotates x [batch, length, heads, head_dim] by integer positions [batch, length]."""
  freqs = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)[None, None, :]
  emb = jnp.concatenate([freqs, freqs], axis=-1)[:, :, None, :]
  cos, sin = jnp.cos(emb).astype(x.dtype), jnp.sin(emb).astype(x.dtype)
  half = x.shape[-1] // 2
  rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
  return x * cos + rotated * sin
