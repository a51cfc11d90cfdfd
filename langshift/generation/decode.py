"""Batched autoregressive decoding on the KV cache, compiled once as a `lax.while_loop`.

Prompts are left-padded to a common length [B, T] with segment id 0 on padding and 1 on prompt
tokens, so every row's last prompt token sits in the last column and all rows step together. The
loop prefills the prompt, then chooses one token per step for every row until each row has emitted
a stop token (the template's end-of-turn) or `max_new_tokens` is reached.

Sharding: the batch axis carries the logical name `activation_batch` (the same as in training), so
under a mesh and logical-axis rules the loop runs data-parallel over rows and tensor-parallel over
whatever the rules shard in the parameters; without them it runs on one device.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding

from langshift.generation.logits_processors import DecodeContext, LogitsProcessor, apply_processors
from langshift.generation.sampling import SamplingParams, sample_next_token
from langshift.models.config import ModelConfig
from langshift.models.llama import LlamaDecoder, init_cache, positions_from_segment_ids

_CACHE_AXES = (None, "cache_batch", None, "activation_kv_heads", "activation_head_dim")


class GenerationOutput(NamedTuple):
  tokens: jax.Array  # int32 [B, max_new_tokens]; pad_id after a row stops.
  lengths: jax.Array  # int32 [B]: tokens generated, the stop token included.
  stopped: jax.Array  # bool [B]: the row ended on a stop token (not on max_new_tokens).


def stop_token_ids_from_config(config: ModelConfig) -> tuple[int, ...]:
  eos = config.eos_token_id
  if eos is None:
    return ()
  return tuple(eos) if isinstance(eos, (tuple, list)) else (int(eos),)


def generate(params, prompt_tokens: jax.Array, prompt_segment_ids: jax.Array, rng: jax.Array, *,
             config: ModelConfig, max_new_tokens: int, sampling: SamplingParams = SamplingParams(),
             stop_token_ids: Sequence[int] = (), processors: Sequence[LogitsProcessor] = (),
             pad_id: int = 0, constrain=None) -> GenerationOutput:
  """Continues left-padded prompts; a pure function (jit it, or use `make_generate_fn`).

  Args:
    params: decoder parameters (the `params` collection).
    prompt_tokens: int [B, T], left-padded; every row needs at least one real token.
    prompt_segment_ids: int [B, T], 0 on padding and 1 on prompt tokens.
    rng: PRNG key for sampling (unused when greedy).
    stop_token_ids: a row stops once it emits any of these (kept in the output).
    constrain: optional `(array, logical_axis_names) -> array` sharding constraint.
  """
  model = LlamaDecoder(config)
  batch, prompt_len = prompt_tokens.shape
  vocab = config.vocab_size
  rows = jnp.arange(batch)
  prompt_segment_ids = prompt_segment_ids.astype(jnp.int32)
  cache = init_cache(config, batch, prompt_len + max_new_tokens)
  if constrain is not None:
    prompt_tokens = constrain(prompt_tokens, ("activation_batch", None))
    cache = {**cache, "k": constrain(cache["k"], _CACHE_AXES),
             "v": constrain(cache["v"], _CACHE_AXES)}
  positions = positions_from_segment_ids(prompt_segment_ids)
  logits, cache = model.apply({"params": params}, prompt_tokens, positions, prompt_segment_ids,
                              cache, method="decode")
  next_position = jnp.sum(prompt_segment_ids > 0, axis=1).astype(jnp.int32)
  seen = jnp.zeros((batch, vocab), jnp.int32).at[rows[:, None], prompt_tokens].add(
      (prompt_segment_ids > 0).astype(jnp.int32)) > 0
  stop_ids = jnp.asarray(tuple(stop_token_ids) or (-1,), jnp.int32)

  def cond(state):
    step, _, _, _, done, _, _, _ = state
    return (step < max_new_tokens) & ~jnp.all(done)

  def body(state):
    step, logits, cache, out, done, lengths, seen, rng = state
    rng, key = jax.random.split(rng)
    scores = apply_processors(processors, logits, DecodeContext(seen=seen, step=step))
    token = sample_next_token(scores, key, sampling)
    token = jnp.where(done, pad_id, token)
    out = out.at[:, step].set(token)
    lengths = lengths + (~done).astype(jnp.int32)
    seen = seen.at[rows, token].set(seen[rows, token] | ~done)
    done = done | jnp.isin(token, stop_ids)
    # A finished row keeps feeding padding; its outputs are ignored from here on.
    logits, cache = model.apply({"params": params}, token[:, None], (next_position + step)[:, None],
                                jnp.ones((batch, 1), jnp.int32), cache, method="decode")
    return step + 1, logits[:, -1].astype(jnp.float32), cache, out, done, lengths, seen, rng

  init = (jnp.zeros((), jnp.int32), logits[:, -1].astype(jnp.float32), cache,
          jnp.full((batch, max_new_tokens), pad_id, jnp.int32), jnp.zeros((batch,), bool),
          jnp.zeros((batch,), jnp.int32), seen, rng)
  _, _, _, out, done, lengths, _, _ = jax.lax.while_loop(cond, body, init)
  return GenerationOutput(tokens=out, lengths=lengths, stopped=done)


@functools.lru_cache(maxsize=32)
def make_generate_fn(config: ModelConfig, max_new_tokens: int,
                     sampling: SamplingParams = SamplingParams(),
                     stop_token_ids: tuple[int, ...] = (),
                     processors: tuple[LogitsProcessor, ...] = (), pad_id: int = 0, mesh=None,
                     rules: tuple | None = None):
  """A jit-compiled `generate(params, prompt_tokens, prompt_segment_ids, rng)`.

  Cached on its (hashable) settings, so a trainer that evaluates every N steps compiles once per
  prompt shape. With `mesh` and `rules` (the logical-axis rules table), prompts and the KV cache
  are constrained to the batch sharding the rules give `activation_batch`/`cache_batch`; the
  parameters keep the sharding they arrive with and XLA propagates the rest.
  """
  constrain = None
  if mesh is not None:
    rules = tuple(rules or ())

    def constrain_to_mesh(x, names):
      spec = nn.logical_to_mesh_axes(names, rules)
      return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))

    constrain = constrain_to_mesh

  return jax.jit(functools.partial(
      generate, config=config, max_new_tokens=max_new_tokens, sampling=sampling,
      stop_token_ids=tuple(stop_token_ids), processors=tuple(processors), pad_id=pad_id,
      constrain=constrain))
