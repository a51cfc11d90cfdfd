"""Batched autoregressive decoding on a slot KV cache: the device programs of generation.

The engine holds `batch` rows ("slots"), each a sequence at its own point: its prompt sits in
cache slots [0, len) (no padding inside a row) and every decode step writes one token per row at
the row's own position. Three compiled programs act on a `DecodeState`:

* `init_state`: empty rows;
* `prefill`: runs G right-padded prompts, writes their keys/values into G chosen rows, and
  chooses each row's first token (logits of the last prompt position only);
* `decode`: a `lax.while_loop` of one-token steps over all rows until every row is done, a step
  budget runs out, or enough rows (`min_free`) have finished to take waiting requests.

`generate` chains the three for one left-padded batch in one program; `LocalGenerator`
(`local_backend.py`) drives them from the host for continuous batching: a finished row's slot is
refilled with the next request between `decode` calls, so a stream of requests keeps every row
busy instead of decoding padding until the batch's longest answer ends.

Sampling: request r's token t is drawn with key fold_in(fold_in(rng, r), t), so an answer does not
depend on which row, batch or step it ran in. Logits processors see a per-row `DecodeContext`;
without processors the [batch, vocab] seen-token mask is not kept at all.

Sharding: rows carry the logical name `activation_batch` (`cache_batch` in the cache), so under a
mesh and logical-axis rules decoding is data-parallel over rows and tensor-parallel over whatever
the rules shard in the parameters; without them it runs on one device.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import NamedTuple

import flax.struct
import jax
import jax.numpy as jnp

from langshift.generation.logits_processors import DecodeContext, LogitsProcessor, apply_processors
from langshift.generation.sampling import SamplingParams, sample_next_token
from langshift.models.config import ModelConfig
from langshift.models.llama import (
    LlamaDecoder,
    SlotCache,
    decode_step,
    decode_weights,
    init_slot_cache,
)
from langshift.parallel import sharding as sharding_lib

_K_AXES = ("cache_batch", "activation_kv_heads", "activation_head_dim", None)
_V_AXES = ("cache_batch", "activation_kv_heads", None, "activation_head_dim")


class GenerationOutput(NamedTuple):
  tokens: jax.Array  # int32 [B, max_new_tokens]; pad_id after a row stops.
  lengths: jax.Array  # int32 [B]: tokens generated, the stop token included.
  stopped: jax.Array  # bool [B]: the row ended on a stop token (not on max_new_tokens).


@dataclasses.dataclass(frozen=True)
class DecodeSpec:
  """Everything static about how tokens are chosen (hashable: part of the compiled programs)."""

  max_new_tokens: int
  sampling: SamplingParams = SamplingParams()
  stop_token_ids: tuple[int, ...] = ()
  processors: tuple[LogitsProcessor, ...] = ()
  pad_id: int = 0

  def __post_init__(self):
    if self.max_new_tokens < 1:
      raise ValueError(f"max_new_tokens={self.max_new_tokens}: generation needs at least 1")


@flax.struct.dataclass
class DecodeState:
  """Per-row state of the engine (the `while_loop` carry of `decode`)."""

  cache: SlotCache
  positions: jax.Array  # int32 [B]: slot (= position) where `token` goes when it is fed.
  token: jax.Array  # int32 [B]: the row's last chosen token, not yet in the cache.
  active: jax.Array  # bool [B]: the row is still generating.
  stopped: jax.Array  # bool [B]: the row ended on a stop token.
  out: jax.Array  # int32 [B, max_new_tokens]: chosen tokens, pad_id after the row's end.
  n_out: jax.Array  # int32 [B]: tokens chosen so far (the stop token included).
  request: jax.Array  # int32 [B]: the request in the row (its sampling key stream).
  seen: jax.Array | None  # bool [B, V]: prompt and response tokens (only with processors).

  @property
  def batch(self) -> int:
    return self.positions.shape[0]


def stop_token_ids_from_config(config: ModelConfig) -> tuple[int, ...]:
  eos = config.eos_token_id
  if eos is None:
    return ()
  return tuple(eos) if isinstance(eos, (tuple, list)) else (int(eos),)


def _constrain_state(state: DecodeState, constrain) -> DecodeState:
  if constrain is None:
    return state
  rows = ("activation_batch",)
  table = ("activation_batch", None)
  return state.replace(
      cache=SlotCache(
          tuple(
              c.replace(k=constrain(c.k, _K_AXES), v=constrain(c.v, _V_AXES))
              for c in state.cache.layers
          )
      ),
      positions=constrain(state.positions, rows),
      token=constrain(state.token, rows),
      active=constrain(state.active, rows),
      stopped=constrain(state.stopped, rows),
      out=constrain(state.out, table),
      n_out=constrain(state.n_out, rows),
      request=constrain(state.request, rows),
      seen=None if state.seen is None else constrain(state.seen, table),
  )


def init_state(
    *, config: ModelConfig, spec: DecodeSpec, batch: int, capacity: int, constrain=None
) -> DecodeState:
  """`batch` empty rows with `capacity` cache slots each (prompt + max_new_tokens fits)."""
  zeros = jnp.zeros((batch,), jnp.int32)
  state = DecodeState(
      cache=init_slot_cache(config, batch, capacity),
      positions=zeros,
      token=zeros,
      active=jnp.zeros((batch,), bool),
      stopped=jnp.zeros((batch,), bool),
      out=jnp.full((batch, spec.max_new_tokens), spec.pad_id, jnp.int32),
      n_out=zeros,
      request=zeros,
      seen=jnp.zeros((batch, config.vocab_size), bool) if spec.processors else None,
  )
  return _constrain_state(state, constrain)


def _choose(spec: DecodeSpec, logits, rng, request, n_out, seen):
  """Next token per row: processors, then greedy or sampling with per-request keys."""
  if spec.processors:
    logits = apply_processors(spec.processors, logits, DecodeContext(seen=seen, step=n_out))
  keys = None
  if not spec.sampling.greedy:
    keys = jax.vmap(lambda r, t: jax.random.fold_in(jax.random.fold_in(rng, r), t))(request, n_out)
  return sample_next_token(logits, keys, spec.sampling)


def _is_stop(spec: DecodeSpec, tokens):
  return jnp.isin(tokens, jnp.asarray(spec.stop_token_ids or (-1,), jnp.int32))


def prefill(
    params,
    state: DecodeState,
    tokens: jax.Array,
    lengths: jax.Array,
    slots: jax.Array,
    requests: jax.Array,
    rng: jax.Array,
    *,
    config: ModelConfig,
    spec: DecodeSpec,
    constrain=None,
) -> DecodeState:
  """Starts G requests in rows `slots` [G] (an index >= batch is a padding request).

  tokens: int [G, T], right-padded prompts of `lengths` [G] (each >= 1, T <= capacity);
  requests: int [G], the requests' indices (their sampling key streams).
  """
  g, t = tokens.shape
  tokens = tokens.astype(jnp.int32)
  lengths = lengths.astype(jnp.int32)
  logits, k, v = LlamaDecoder(config).apply(
      {"params": params}, tokens, lengths, method=LlamaDecoder.prefill
  )
  seen = None
  if spec.processors:
    in_prompt = jnp.arange(t)[None, :] < lengths[:, None]
    seen = jnp.zeros((g, config.vocab_size), bool).at[jnp.arange(g)[:, None], tokens].max(in_prompt)
  zeros = jnp.zeros((g,), jnp.int32)
  first = _choose(spec, logits, rng, requests, zeros, seen)
  stop = _is_stop(spec, first)

  def put(field, values):  # a padding request's out-of-range row writes nothing
    return field.at[slots].set(values, mode="drop")

  state = state.replace(
      cache=state.cache.write_prompts(k, v, slots),
      positions=put(state.positions, lengths),
      token=put(state.token, first),
      active=put(state.active, ~stop & (spec.max_new_tokens > 1)),
      stopped=put(state.stopped, stop),
      out=put(state.out, jnp.full((g, spec.max_new_tokens), spec.pad_id).at[:, 0].set(first)),
      n_out=put(state.n_out, zeros + 1),
      request=put(state.request, requests.astype(jnp.int32)),
      seen=None if seen is None else put(state.seen, seen.at[jnp.arange(g), first].set(True)),
  )
  return _constrain_state(state, constrain)


def decode(
    params,
    state: DecodeState,
    rng: jax.Array,
    max_steps: jax.Array,
    min_free: jax.Array,
    *,
    config: ModelConfig,
    spec: DecodeSpec,
    kv_len: int | None = None,
    constrain=None,
) -> tuple[DecodeState, jax.Array]:
  """One-token steps for every active row; returns (state, steps run).

  `params`: `llama.decode_weights` of the model's params (done once by the caller).

  Stops when no row is active, after `max_steps` steps, or as soon as `min_free` rows are not
  active (their slots can take waiting requests; more than `batch` never stops for that).
  `kv_len` (static) limits attention to cache slots [0, kv_len): every active row's position
  plus `max_steps` must stay within it.
  """
  rows = jnp.arange(state.batch)

  def cond(carry):
    step, s = carry
    free = jnp.sum(~s.active, dtype=jnp.int32)
    return (step < max_steps) & jnp.any(s.active) & (free < min_free)

  def body(carry):
    step, s = carry
    logits, cache = decode_step(config, params, s.token, s.positions, s.cache, kv_len=kv_len)
    chosen = _choose(spec, logits, rng, s.request, s.n_out, s.seen)
    live = s.active
    chosen = jnp.where(live, chosen, spec.pad_id)
    stop = live & _is_stop(spec, chosen)
    n_out = s.n_out + live.astype(jnp.int32)
    # Finished rows still run through the model (the batch is static); nothing of theirs moves.
    s = s.replace(
        cache=cache,
        positions=s.positions + live.astype(jnp.int32),
        token=jnp.where(live, chosen, s.token),
        active=live & ~stop & (n_out < spec.max_new_tokens),
        stopped=s.stopped | stop,
        out=s.out.at[rows, jnp.where(live, s.n_out, spec.max_new_tokens)].set(chosen, mode="drop"),
        n_out=n_out,
        seen=None if s.seen is None else s.seen.at[rows, chosen].max(live),
    )
    return step + 1, _constrain_state(s, constrain)

  steps, state = jax.lax.while_loop(cond, body, (jnp.zeros((), jnp.int32), state))
  return state, steps


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
  """Continues one batch of left-padded prompts; a pure function (jit it, or use
  `make_generate_fn`). Row b is request b of the sampling key streams.

  Args:
    params: decoder parameters (the `params` collection).
    prompt_tokens: int [B, T], left-padded; every row needs at least one real token.
    prompt_segment_ids: int [B, T], 0 on the left padding and 1 on prompt tokens.
    rng: PRNG key for sampling (unused when greedy).
    stop_token_ids: a row stops once it emits any of these (kept in the output).
    constrain: optional `(array, logical_axis_names) -> array` sharding constraint.
  """
  spec = DecodeSpec(max_new_tokens, sampling, tuple(stop_token_ids), tuple(processors), pad_id)
  batch, t = prompt_tokens.shape
  if constrain is not None:
    prompt_tokens = constrain(prompt_tokens, ("activation_batch", None))
  lengths = jnp.sum(prompt_segment_ids > 0, axis=1).astype(jnp.int32)
  # Left-padded rows -> prompts from slot 0 (right-padded), the engine's layout.
  index = jnp.arange(t)[None, :] + (t - lengths)[:, None]
  tokens = jnp.take_along_axis(prompt_tokens, jnp.minimum(index, t - 1), axis=1)
  tokens = jnp.where(jnp.arange(t)[None, :] < lengths[:, None], tokens, pad_id)
  state = init_state(
      config=config, spec=spec, batch=batch, capacity=t + max_new_tokens, constrain=constrain
  )
  rows = jnp.arange(batch, dtype=jnp.int32)
  state = prefill(
      params, state, tokens, lengths, rows, rows, rng, config=config, spec=spec, constrain=constrain
  )
  state, _ = decode(
      decode_weights(config, params),
      state,
      rng,
      jnp.int32(max_new_tokens),
      jnp.int32(batch + 1),  # nothing waits: run until every row is done
      config=config,
      spec=spec,
      constrain=constrain,
  )
  return GenerationOutput(tokens=state.out, lengths=state.n_out, stopped=state.stopped)


def mesh_constraint(mesh, rules):
  """The `constrain` function for `mesh` and a logical-axis rules table (None without a mesh)."""
  if mesh is None:
    return None
  # No rules: an empty table, so every logical axis is replicated.
  return functools.partial(sharding_lib.logical_constraint, mesh=mesh, rules=rules or ())


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
  prompt shape. With `mesh` and `rules` (the logical-axis rules table), prompts and the decode
  state are constrained to the batch sharding the rules give `activation_batch`/`cache_batch`;
  the parameters keep the sharding they arrive with and XLA propagates the rest.
  """
  return jax.jit(
      functools.partial(
          generate,
          config=config,
          max_new_tokens=max_new_tokens,
          sampling=sampling,
          stop_token_ids=tuple(stop_token_ids),
          processors=tuple(processors),
          pad_id=pad_id,
          constrain=mesh_constraint(mesh, rules),
      )
  )


class Engine(NamedTuple):
  """The compiled programs continuous batching drives (`make_engine`); states are donated."""

  decode_weights: object  # params -> decode params (`llama.decode_weights`)
  init: object  # () -> DecodeState
  prefill: object  # (params, state, tokens, lengths, slots, requests, rng) -> DecodeState
  # (decode params, state, rng, max_steps, min_free, kv_len=static) -> (state, steps)
  decode: object


@functools.lru_cache(maxsize=32)
def make_engine(
    config: ModelConfig, spec: DecodeSpec, batch: int, capacity: int, mesh=None, rules=None
) -> Engine:
  """jit-compiled `init_state`, `prefill` and `decode` for `batch` rows of `capacity` slots.

  Cached on its settings; XLA compiles `prefill` once per prompt group shape and `decode` once
  per `kv_len`.
  """
  constrain = mesh_constraint(mesh, rules)
  common = dict(config=config, spec=spec, constrain=constrain)
  init = jax.jit(functools.partial(init_state, batch=batch, capacity=capacity, **common))
  pre = jax.jit(functools.partial(prefill, **common), donate_argnums=(1,))
  dec = jax.jit(functools.partial(decode, **common), donate_argnums=(1,), static_argnames="kv_len")
  return Engine(jax.jit(functools.partial(decode_weights, config)), init, pre, dec)
