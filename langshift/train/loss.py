"""Token-weighted causal-LM loss: sums, divided once, so accumulation and multi-host are exact."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def weighted_cross_entropy(logits, targets, weights, z_loss: float = 0.0):
  """Returns (sum of weighted CE [+ z-loss], sum of weights); logits upcast to fp32 here.

  z-loss (PaLM): z * log(Z)^2 per token keeps the softmax normaliser near 1 in low precision.
  """
  logits = logits.astype(jnp.float32)
  log_z = jax.nn.logsumexp(logits, axis=-1)
  target_logit = jnp.take_along_axis(logits, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
  per_token = log_z - target_logit
  if z_loss:
    per_token = per_token + z_loss * jnp.square(log_z)
  weights = weights.astype(jnp.float32)
  return jnp.sum(per_token * weights), jnp.sum(weights)


def chunked_cross_entropy(hidden, project, targets, weights, chunk_size: int, z_loss=0.0):
  """Same sums, computing logits `chunk_size` positions at a time under remat.

  The full [batch, length, vocab] logits never exist in fp32 (for a 128k vocabulary they dwarf the
  activations); each chunk's logits are recomputed in the backward pass.
  """
  b, t, d = hidden.shape
  if t % chunk_size:
    raise ValueError(f"train.loss_chunk_size={chunk_size} must divide seq_len={t}")
  n = t // chunk_size
  split = lambda x: jnp.swapaxes(x.reshape((b, n, chunk_size) + x.shape[2:]), 0, 1)  # noqa: E731

  @jax.checkpoint
  def one(chunk):
    h, y, w = chunk
    return weighted_cross_entropy(project(h), y, w, z_loss)

  sums, counts = jax.lax.map(one, (split(hidden), split(targets), split(weights)))
  return jnp.sum(sums), jnp.sum(counts)
