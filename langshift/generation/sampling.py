"""Next-token selection: greedy, temperature, top-k and nucleus (top-p) sampling.

All functions take fp32 logits [batch, vocab] and are pure, so they run inside the jit-compiled
decode loop. Filtering follows the `transformers` warpers (temperature, then top-k, then top-p) so
that seeded sampling is comparable across implementations in distribution, not bit for bit.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

_NEG_INF = -jnp.inf


@dataclasses.dataclass(frozen=True)
class SamplingParams:
  """How each new token is chosen. temperature == 0 means greedy (top_k/top_p are ignored)."""

  temperature: float = 0.0
  top_k: int = 0  # 0: no top-k filtering.
  top_p: float = 1.0  # 1.0: no nucleus filtering.

  @property
  def greedy(self) -> bool:
    return self.temperature == 0.0


def top_k_filter(logits: jax.Array, k: int) -> jax.Array:
  """Keeps the k largest logits per row (ties at the threshold are kept), -inf elsewhere."""
  if k <= 0 or k >= logits.shape[-1]:
    return logits
  threshold = jax.lax.top_k(logits, k)[0][..., -1:]
  return jnp.where(logits < threshold, _NEG_INF, logits)


def top_p_filter(logits: jax.Array, p: float) -> jax.Array:
  """Keeps the smallest set of most likely tokens whose probability reaches p (at least one)."""
  if p >= 1.0:
    return logits
  sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]
  probs = jax.nn.softmax(sorted_logits, axis=-1)
  # Mass strictly before each sorted token: a token is kept while that mass is still below p.
  mass_before = jnp.cumsum(probs, axis=-1) - probs
  keep_sorted = mass_before < p
  # The smallest kept logit is the threshold; everything below it is dropped.
  threshold = jnp.min(jnp.where(keep_sorted, sorted_logits, jnp.inf), axis=-1, keepdims=True)
  return jnp.where(logits < threshold, _NEG_INF, logits)


def sample_next_token(logits: jax.Array, rng: jax.Array, params: SamplingParams) -> jax.Array:
  """logits [B, V] -> token ids [B] (int32).

  `rng` is one key for the batch, or one key per row ([B]): the generation engine gives each
  request its own key stream, so a sampled answer does not depend on its batch neighbours.
  """
  logits = logits.astype(jnp.float32)
  if params.greedy:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  logits = logits / params.temperature
  logits = top_k_filter(logits, params.top_k)
  logits = top_p_filter(logits, params.top_p)
  if jnp.ndim(rng) == 1 and jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key):
    sample = jax.vmap(lambda key, row: jax.random.categorical(key, row))
    return sample(rng, logits).astype(jnp.int32)
  return jax.random.categorical(rng, logits, axis=-1).astype(jnp.int32)
