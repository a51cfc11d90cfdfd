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
from collections.abc import Sequence
from typing import NamedTuple

import flax.struct
import jax
import jax.numpy as jnp

from langshift.generation.logits_processors import DecodeContext, LogitsProcessor, apply_processors
from langshift.generation.sampling import SamplingParams, sample_next_token
from langshift.models.config import ModelConfig
from langshift.models.llama import LlamaDecoder, init_cache, positions_from_segment_ids
from langshift.parallel import sharding as sharding_lib

_CACHE_AXES = (None, "cache_batch", None, "activation_kv_heads", "activation_head_dim")


class GenerationOutput(NamedTuple):
  tokens: jax.Array  # int32 [B, max_new_tokens]; pad_id after a row stops.
  lengths: jax.Array  # int32 [B]: tokens generated, the stop token included.
  stopped: jax.Array  # bool [B]: the row ended on a stop token (not on max_new_tokens).


@flax.struct.dataclass
class DecodeState:
  """The `lax.while_loop` carry of `generate`: everything that changes from step to step."""

  step: jax.Array  # int32 []: iterations so far, i.e. the column of `out` written next.
  logits: jax.Array  # float32 [B, V]: next-token logits from the last model call.
  cache: dict  # the KV cache (`llama.init_cache`).
  out: jax.Array  # int32 [B, max_new_tokens]: chosen tokens, pad_id where not yet written.
  done: jax.Array  # bool [B]: the row has emitted a stop token.
  lengths: jax.Array  # int32 [B]: tokens generated per row, the stop token included.
  seen: jax.Array  # bool [B, V]: tokens in the prompt or generated so far (for penalties).
  rng: jax.Array  # PRNG key, split once per step.


def stop_token_ids_from_config(config: ModelConfig) -> tuple[int, ...]:
  eos = config.eos_token_id
  if eos is None:
    return ()
  return tuple(eos) if isinstance(eos, (tuple, list)) else (int(eos),)


def generate(
    params,
    prompt_tokens: jax.Array,
    prompt_segment_ids: jax.Array,
    rng: jax.Array,
    *,
    config: ModelConfig,
    max_new_tokens: int,
    sampling: SamplingParams = SamplingParams(),
    stop_token_ids: Sequence[int] = (),
    processors: Sequence[LogitsProcessor] = (),
    pad_id: int = 0,
    constrain=None,
) -> GenerationOutput:
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
    cache = {
        **cache,
        "k": constrain(cache["k"], _CACHE_AXES),
        "v": constrain(cache["v"], _CACHE_AXES),
    }
  positions = positions_from_segment_ids(prompt_segment_ids)
  logits, cache = model.apply(
      {"params": params}, prompt_tokens, positions, prompt_segment_ids, cache, method="decode"
  )
  next_position = jnp.sum(prompt_segment_ids > 0, axis=1).astype(jnp.int32)
  seen = (
      jnp.zeros((batch, vocab), jnp.int32)
      .at[rows[:, None], prompt_tokens]
      .add((prompt_segment_ids > 0).astype(jnp.int32))
      > 0
  )
  stop_ids = jnp.asarray(tuple(stop_token_ids) or (-1,), jnp.int32)

  def cond(s: DecodeState):
    return (s.step < max_new_tokens) & ~jnp.all(s.done)

  def body(s: DecodeState):
    rng, key = jax.random.split(s.rng)
    scores = apply_processors(processors, s.logits, DecodeContext(seen=s.seen, step=s.step))
    token = jnp.where(s.done, pad_id, sample_next_token(scores, key, sampling))
    # A finished row keeps feeding padding; its outputs are ignored from here on.
    logits, cache = model.apply(
        {"params": params},
        token[:, None],
        (next_position + s.step)[:, None],
        jnp.ones((batch, 1), jnp.int32),
        s.cache,
        method="decode",
    )
    return s.replace(
        step=s.step + 1,
        logits=logits[:, -1].astype(jnp.float32),
        cache=cache,
        out=s.out.at[:, s.step].set(token),
        done=s.done | jnp.isin(token, stop_ids),
        lengths=s.lengths + (~s.done).astype(jnp.int32),
        seen=s.seen.at[rows, token].set(s.seen[rows, token] | ~s.done),
        rng=rng,
    )

  init = DecodeState(
      step=jnp.zeros((), jnp.int32),
      logits=logits[:, -1].astype(jnp.float32),
      cache=cache,
      out=jnp.full((batch, max_new_tokens), pad_id, jnp.int32),
      done=jnp.zeros((batch,), bool),
      lengths=jnp.zeros((batch,), jnp.int32),
      seen=seen,
      rng=rng,
  )
  final = jax.lax.while_loop(cond, body, init)
  return GenerationOutput(tokens=final.out, lengths=final.lengths, stopped=final.done)


@functools.lru_cache(maxsize=32)
def make_generate_fn(
    config: ModelConfig,
    max_new_tokens: int,
    sampling: SamplingParams = SamplingParams(),
    stop_token_ids: tuple[int, ...] = (),
    processors: tuple[LogitsProcessor, ...] = (),
    pad_id: int = 0,
    mesh=None,
    rules: tuple | None = None,
):
  """A jit-compiled `generate(params, prompt_tokens, prompt_segment_ids, rng)`.

  Cached on its (hashable) settings, so a trainer that evaluates every N steps compiles once per
  prompt shape. With `mesh` and `rules` (the logical-axis rules table), prompts and the KV cache
  are constrained to the batch sharding the rules give `activation_batch`/`cache_batch`; the
  parameters keep the sharding they arrive with and XLA propagates the rest.
  """
  constrain = None
  if mesh is not None:
    # No rules: an empty table, so every logical axis is replicated.
    constrain = functools.partial(sharding_lib.logical_constraint, mesh=mesh, rules=rules or ())

  return jax.jit(
      functools.partial(
          generate,
          config=config,
          max_new_tokens=max_new_tokens,
          sampling=sampling,
          stop_token_ids=tuple(stop_token_ids),
          processors=tuple(processors),
          pad_id=pad_id,
          constrain=constrain,
      )
  )
