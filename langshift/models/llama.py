"""Llama-family decoder (Llama-2/3/3.x, Mistral, Qwen2, SmolLM2) as Flax linen modules.

Parameter tree (scanned layers carry a leading `layers` axis), named after the Hugging Face modules
so that checkpoint conversion is a table, not a puzzle:

  embed_tokens/embedding            [vocab, embed]
  layers/input_layernorm/scale      [layers, embed]
  layers/self_attn/{q,k,v}_proj/kernel  [layers, embed, heads|kv_heads, head_dim] (+ bias)
  layers/self_attn/o_proj/kernel    [layers, heads, head_dim, embed]
  layers/post_attention_layernorm/scale
  layers/mlp/{gate,up}_proj/kernel  [layers, embed, mlp]
  layers/mlp/down_proj/kernel       [layers, mlp, embed]
  norm/scale                        [embed]
  lm_head/kernel                    [embed, vocab]   (absent when embeddings are tied)

Every parameter and key activation carries logical axis names; `langshift.parallel.sharding` maps
them to mesh axes by the rules in the experiment config.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from langshift.models import attention as attention_lib
from langshift.models import lora as lora_lib
from langshift.models.config import ModelConfig
from langshift.models.rope import apply_rope, inverse_frequencies

Array = jax.Array

REMAT_POLICIES = {
    "none": None,
    # Keep the weight matmul outputs, recompute the cheap elementwise ops and attention softmax.
    "minimal": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
    # Save nothing inside a layer: only the layer inputs (the scan carry) stay live.
    "full": jax.checkpoint_policies.nothing_saveable,
}


def _dtype(name: str):
  return jnp.dtype(name)


def _init(names, init=nn.initializers.normal(0.02)):
  return nn.with_logical_partitioning(init, names)


@flax.struct.dataclass
class AttentionInputs:
  """Where this call's T query tokens sit and which S key/value slots they may see.

  The same for every layer, so the layer scan broadcasts it as one pytree; a new per-call input
  is one field here rather than one more argument through every layer.
  """

  positions: Array  # int [B, T]: rotary positions.
  segment_ids: Array  # int [B, T]: query segments (0 = padding).
  kv_segment_ids: Array | None = None  # int [B, S]: key/value segments.
  q_index: Array | None = None  # int [B, T]: slot of each query, for causality and the window.
  kv_index: Array | None = None  # int [B, S]: slot of each key/value.
  cache_index: Array | None = None  # int []: first KV-cache slot written (decode only).
  # Prefill: every layer also returns its keys and values (`LlamaDecoder.prefill`).
  collect_kv: bool = flax.struct.field(pytree_node=False, default=False)
  # One-token decode on a `SlotCache`: attend to slots [0, kv_len) only (None: all of them).
  kv_len: int | None = flax.struct.field(pytree_node=False, default=None)


@flax.struct.dataclass
class LayerSlots:
  """One layer of a `SlotCache`. Keys are stored transposed, so that both attention products of
  a one-token step are plain matrix products over contiguous memory (on CPU the query-key product
  took 2.4x less time than with keys as [slots, kv_heads, head_dim]; docs/benchmarks.md)."""

  k: Array  # [B, kv_heads, head_dim, S]
  v: Array  # [B, kv_heads, S, head_dim]

  def write(self, k: Array, v: Array, positions: Array) -> LayerSlots:
    """Writes one token's keys/values k, v [B, kv_heads, head_dim] at slot `positions` [B] of
    each row: a scatter, which XLA does in place on a cache carried through the decode loop."""
    rows = jnp.arange(k.shape[0])
    return LayerSlots(
        self.k.at[rows, :, :, positions].set(k.astype(self.k.dtype)),
        self.v.at[rows, :, positions, :].set(v.astype(self.v.dtype)),
    )


@flax.struct.dataclass
class SlotCache:
  """The generation engine's KV cache: one row ("slot") per sequence, and slot j of a row holds
  the keys and values of the row's token at position j (prompts start at slot 0, so no padding
  sits inside a row and a row can be refilled with a new sequence on its own).

  One buffer per layer rather than one [layers, ...] array: a layer then attends to its buffer
  directly, where slicing layer i out of a stacked cache copied it (2 x 9 MB per layer and step
  at batch 32, a third of the step on CPU).
  """

  layers: tuple[LayerSlots, ...]

  @property
  def capacity(self) -> int:
    return self.layers[0].v.shape[2]

  def write_prompts(self, k: Array, v: Array, slots: Array) -> SlotCache:
    """Writes prefilled keys/values k, v [layers, G, T, kv_heads, head_dim] into rows `slots`
    [G] at slots [0, T); an out-of-range row index (a padding request) writes nothing."""
    t = k.shape[2]
    k_t, v_t = k.transpose(0, 1, 3, 4, 2), v.transpose(0, 1, 3, 2, 4)
    return SlotCache(
        tuple(
            LayerSlots(
                c.k.at[slots, :, :, :t].set(k_t[i].astype(c.k.dtype), mode="drop"),
                c.v.at[slots, :, :t, :].set(v_t[i].astype(c.v.dtype), mode="drop"),
            )
            for i, c in enumerate(self.layers)
        )
    )


class Linear(nn.Module):
  """y = x[..., *in] . kernel[*in, *out] (+ bias[*out]), contracting the last `in_axes` dims.

  Flax's DenseGeneral initialises a flattened kernel and reshapes it, which breaks logical
  sharding constraints under a mesh; this creates the kernel in its final shape.
  """

  out_shape: tuple[int, ...]
  names: tuple[str, ...]  # logical names of the kernel axes (in axes, then out axes)
  in_axes: int = 1
  use_bias: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  lora: Any = None  # langshift.models.lora.LoraConfig of the model, or None

  @nn.compact
  def __call__(self, x):
    in_shape = tuple(x.shape[x.ndim - self.in_axes :])
    kernel = self.param(
        "kernel", _init(self.names), in_shape + tuple(self.out_shape), self.param_dtype
    )
    # As one 2-D matmul over flattened tokens: the weight-gradient dot then contracts the token
    # axis of two row-major matrices, which XLA runs without transposing activations (the MLP
    # backward is ~20% faster on CPU than with [batch, length] kept apart).
    lead = x.shape[: x.ndim - self.in_axes]
    n_in, n_out = int(np.prod(in_shape)), int(np.prod(self.out_shape))
    x2d = x.astype(self.dtype).reshape(-1, n_in)
    y = jnp.dot(x2d, jnp.asarray(kernel, self.dtype).reshape(n_in, n_out))
    if self._has_adapter():
      y = y + self._adapter(x2d, in_shape, n_in, n_out)
    y = y.reshape(lead + tuple(self.out_shape))
    if self.use_bias:
      bias = self.param(
          "bias",
          _init(self.names[self.in_axes :], nn.initializers.zeros),
          tuple(self.out_shape),
          self.param_dtype,
      )
      y = y + jnp.asarray(bias, self.dtype)
    return y

  def _has_adapter(self) -> bool:
    # At init the kernel path decides; afterwards the params do (see langshift/models/lora.py).
    if self.lora is None:
      return False
    if self.is_initializing():
      return self.lora.targets_kernel("/".join(self.scope.path) + "/kernel")
    return self.has_variable("params", "lora_a")

  def _adapter(self, x2d, in_shape, n_in, n_out):
    lora = self.lora
    pdt = jnp.dtype(lora.param_dtype)
    a = self.param(
        "lora_a",
        _init(self.names[: self.in_axes] + (None,), lora_lib.kernel_uniform_init(n_in)),
        in_shape + (lora.rank,),
        pdt,
    )
    b = self.param(
        "lora_b",
        _init((None,) + self.names[self.in_axes :], nn.initializers.zeros),
        (lora.rank,) + tuple(self.out_shape),
        pdt,
    )

    def dropout(h):
      if lora.dropout == 0.0 or not self.has_rng(lora_lib.DROPOUT_RNG):
        return h  # no dropout rng: evaluation and generation
      keep = jax.random.bernoulli(self.make_rng(lora_lib.DROPOUT_RNG), 1.0 - lora.dropout, h.shape)
      return jnp.where(keep, h / (1.0 - lora.dropout), 0).astype(h.dtype)

    return lora_lib.adapter_delta(x2d, a, b, lora, self.dtype, n_in, n_out, dropout)


def rms_norm(x: Array, scale: Array, eps: float, dtype) -> Array:
  """x / rms(x) over the last axis in fp32, scaled after casting back to `dtype` (as transformers
  does); `RMSNorm` and the one-token `decode_step` share it."""
  x32 = x.astype(jnp.float32)
  y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
  return jnp.asarray(scale, dtype) * y.astype(dtype)


class RMSNorm(nn.Module):
  """RMS norm computed in fp32, scale applied after casting back (as transformers does)."""

  eps: float
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x):
    scale = self.param(
        "scale", _init(("norm",), nn.initializers.ones), (x.shape[-1],), self.param_dtype
    )
    return rms_norm(x, scale, self.eps, self.dtype)


class _LayerPart(nn.Module):
  """A module of one decoder layer: holds the model config and reads its dtypes."""

  config: ModelConfig

  @property
  def dtypes(self):
    """(compute dtype, param dtype)."""
    return _dtype(self.config.dtype), _dtype(self.config.param_dtype)


class Attention(_LayerPart):
  """Grouped-query self-attention with rotary positions; optionally writes a KV cache."""

  @nn.compact
  def __call__(self, x, layer_cache, *, inputs: AttentionInputs):
    cfg, (dt, pdt) = self.config, self.dtypes
    hd = cfg.dim_per_head

    def proj(name, heads, axis_name, bias):
      return Linear(
          (heads, hd),
          ("embed", axis_name, "head_dim"),
          use_bias=bias,
          dtype=dt,
          param_dtype=pdt,
          lora=cfg.lora,
          name=name,
      )(x)

    q = proj("q_proj", cfg.num_heads, "heads", cfg.qkv_bias)
    k = proj("k_proj", cfg.num_kv_heads, "kv_heads", cfg.qkv_bias)
    v = proj("v_proj", cfg.num_kv_heads, "kv_heads", cfg.qkv_bias)
    inv_freq = inverse_frequencies(cfg)
    q = apply_rope(q, inputs.positions, inv_freq)
    k = apply_rope(k, inputs.positions, inv_freq)
    q = nn.with_logical_constraint(
        q, ("activation_batch", "activation_length", "activation_heads", "activation_head_dim")
    )
    k = nn.with_logical_constraint(
        k, ("activation_batch", "activation_length", "activation_kv_heads", "activation_head_dim")
    )

    if isinstance(layer_cache, LayerSlots):
      # One new token per row: write it at its position's slot, attend to the row's slots.
      pos = inputs.positions[:, 0]
      new_cache = layer_cache.write(k[:, 0], v[:, 0], pos)
      out = attention_lib.slot_decode_attention(
          q,
          new_cache.k.astype(dt),
          new_cache.v.astype(dt),
          pos,
          sliding_window=cfg.sliding_window,
          kv_len=inputs.kv_len,
      )
    else:
      new_cache = None
      if layer_cache is not None:
        # Write this step's keys/values at slots [cache_index, cache_index + T).
        ck = jax.lax.dynamic_update_slice_in_dim(
            layer_cache["k"], k.astype(layer_cache["k"].dtype), inputs.cache_index, axis=1
        )
        cv = jax.lax.dynamic_update_slice_in_dim(
            layer_cache["v"], v.astype(layer_cache["v"].dtype), inputs.cache_index, axis=1
        )
        new_cache = {"k": ck, "v": cv}
        k, v = ck.astype(dt), cv.astype(dt)
      elif inputs.collect_kv:
        new_cache = {"k": k, "v": v}  # prefill: the caller stores them

      out = attention_lib.dot_product_attention(
          q,
          k,
          v,
          q_segment_ids=inputs.segment_ids,
          kv_segment_ids=inputs.kv_segment_ids,
          q_index=inputs.q_index,
          kv_index=inputs.kv_index,
          sliding_window=cfg.sliding_window,
          impl=cfg.attention_impl,
          decoding=layer_cache is not None,
      )
    out = nn.with_logical_constraint(
        out, ("activation_batch", "activation_length", "activation_heads", "activation_head_dim")
    )
    out = Linear(
        (cfg.hidden_size,),
        ("heads", "head_dim", "embed"),
        in_axes=2,
        use_bias=cfg.o_bias,
        dtype=dt,
        param_dtype=pdt,
        lora=cfg.lora,
        name="o_proj",
    )(out)
    return out, new_cache


class MLP(_LayerPart):
  """SwiGLU feed-forward block."""

  @nn.compact
  def __call__(self, x):
    cfg, (dt, pdt) = self.config, self.dtypes

    def dense(name, features, names):
      return Linear(
          (features,),
          names,
          use_bias=cfg.mlp_bias,
          dtype=dt,
          param_dtype=pdt,
          lora=cfg.lora,
          name=name,
      )

    gate = dense("gate_proj", cfg.intermediate_size, ("embed", "mlp"))(x)
    up = dense("up_proj", cfg.intermediate_size, ("embed", "mlp"))(x)
    h = nn.with_logical_constraint(
        nn.silu(gate) * up, ("activation_batch", "activation_length", "activation_mlp")
    )
    return dense("down_proj", cfg.hidden_size, ("mlp", "embed"))(h)


class DecoderLayer(_LayerPart):
  """Pre-norm attention and MLP blocks, each with a residual connection."""

  # `inputs` stays positional: nn.scan passes no keyword arguments to the scanned layer.
  @nn.compact
  def __call__(self, x, layer_cache, inputs: AttentionInputs):
    cfg, (dt, pdt) = self.config, self.dtypes
    x = nn.with_logical_constraint(x, ("activation_batch", "activation_length", "activation_embed"))
    h = RMSNorm(cfg.rms_norm_eps, dt, pdt, name="input_layernorm")(x)
    h, new_cache = Attention(cfg, name="self_attn")(h, layer_cache, inputs=inputs)
    x = x + h
    h = RMSNorm(cfg.rms_norm_eps, dt, pdt, name="post_attention_layernorm")(x)
    x = x + MLP(cfg, name="mlp")(h)
    return x, new_cache


class LlamaDecoder(nn.Module):
  """tokens [B, T] -> logits [B, T, V]; `decode` runs the same network on a KV cache."""

  config: ModelConfig

  def setup(self):
    cfg = self.config
    dt, pdt = _dtype(cfg.dtype), _dtype(cfg.param_dtype)
    self.embed_tokens = nn.Embed(
        cfg.vocab_size,
        cfg.hidden_size,
        dtype=dt,
        param_dtype=pdt,
        embedding_init=_init(("vocab", "embed")),
    )
    layer_cls = DecoderLayer
    policy = REMAT_POLICIES[cfg.remat_policy]
    if cfg.remat_policy != "none":
      layer_cls = nn.remat(layer_cls, policy=policy, prevent_cse=not cfg.scan_layers)
    if cfg.scan_layers:
      scanned = nn.scan(
          layer_cls,
          variable_axes={"params": 0},
          split_rngs={"params": True, lora_lib.DROPOUT_RNG: True},
          in_axes=(0, nn.broadcast),
          length=cfg.num_layers,
          metadata_params={nn.PARTITION_NAME: "layers"},
      )
      self.layers = scanned(cfg)
    else:
      self.layers = [layer_cls(cfg) for _ in range(cfg.num_layers)]
    self.norm = RMSNorm(cfg.rms_norm_eps, dt, pdt)
    if not cfg.tie_word_embeddings:
      self.lm_head = Linear(
          (cfg.vocab_size,), ("embed", "vocab"), dtype=dt, param_dtype=pdt, lora=cfg.lora
      )

  def embed(self, tokens):
    x = self.embed_tokens(tokens)
    return nn.with_logical_constraint(
        x, ("activation_batch", "activation_length", "activation_embed")
    )

  def head(self, x):
    """Final norm and output projection: hidden states [B, T, D] -> logits [B, T, V]."""
    return self.logits_from_hidden(self.norm(x))

  def _backbone(self, tokens, inputs: AttentionInputs, kv_cache=None):
    x = self.embed(tokens)
    if self.config.scan_layers:
      x, new_kv = self.layers(x, kv_cache, inputs)
    else:
      new_layers = []
      for i, layer in enumerate(self.layers):
        layer_cache = None if kv_cache is None else jax.tree.map(lambda c, i=i: c[i], kv_cache)
        x, c = layer(x, layer_cache, inputs)
        new_layers.append(c)
      new_kv = None if new_layers[0] is None else jax.tree.map(lambda *c: jnp.stack(c), *new_layers)
    return self.norm(x), new_kv

  def logits_from_hidden(self, hidden):
    """Output projection; separate so losses can apply it chunk by chunk."""
    if self.config.tie_word_embeddings:
      logits = self.embed_tokens.attend(hidden)
    else:
      logits = self.lm_head(hidden)
    return nn.with_logical_constraint(
        logits, ("activation_batch", "activation_length", "activation_vocab")
    )

  def __call__(self, tokens, positions=None, segment_ids=None, return_hidden=False):
    """Training/scoring forward pass over packed rows.

    Args:
      tokens: int [B, T].
      positions: int [B, T], restarting at 0 in every packed segment; derived from segment_ids
        when omitted.
      segment_ids: int [B, T]; tokens attend only within their segment (0 = padding). None means
        one segment per row.
      return_hidden: return final-norm hidden states [B, T, D] instead of logits.
    """
    if segment_ids is None:
      segment_ids = jnp.ones_like(tokens, dtype=jnp.int32)
    if positions is None:
      positions = positions_from_segment_ids(segment_ids)
    index = jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)
    inputs = AttentionInputs(
        positions=positions,
        segment_ids=segment_ids,
        kv_segment_ids=segment_ids,
        q_index=index,
        kv_index=index,
    )
    hidden, _ = self._backbone(tokens, inputs)
    return hidden if return_hidden else self.logits_from_hidden(hidden)

  def decode(self, tokens, positions, segment_ids, cache):
    """Runs T new tokens against a KV cache (prefill when T > 1, one step when T == 1).

    `cache` comes from `init_cache`; rows may be left-padded (segment id 0 on padding). Returns
    (logits [B, T, V], updated cache).
    """
    t = tokens.shape[1]
    start = cache["index"]
    kv_segment_ids = jax.lax.dynamic_update_slice_in_dim(
        cache["segment_ids"], segment_ids.astype(jnp.int32), start, axis=1
    )
    q_index = jnp.broadcast_to(start + jnp.arange(t, dtype=jnp.int32), tokens.shape)
    s = cache["segment_ids"].shape[1]
    kv_index = jnp.broadcast_to(jnp.arange(s, dtype=jnp.int32), (tokens.shape[0], s))
    inputs = AttentionInputs(
        positions=positions,
        segment_ids=segment_ids,
        kv_segment_ids=kv_segment_ids,
        q_index=q_index,
        kv_index=kv_index,
        cache_index=start,
    )
    hidden, new_kv = self._backbone(tokens, inputs, {"k": cache["k"], "v": cache["v"]})
    new_cache = {
        "k": new_kv["k"],
        "v": new_kv["v"],
        "segment_ids": kv_segment_ids,
        "index": start + t,
    }
    return self.logits_from_hidden(hidden), new_cache

  def prefill(self, tokens, lengths):
    """Runs right-padded prompts tokens [G, T] of `lengths` [G] for the generation engine.

    Returns (fp32 logits of each prompt's last token [G, V], keys and values
    [layers, G, T, kv_heads, head_dim] of every slot). Only the last position goes through the
    output projection: full logits would be [G, T, V] (1.2 GB at 32 x 192 x 49k) for one row
    each. Attention is the training path's (blocked, cuDNN or splash), so prompt logits equal the
    training forward's.
    """
    g, t = tokens.shape
    index = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (g, t))
    segment_ids = (index < lengths[:, None]).astype(jnp.int32)  # right padding: segment 0
    inputs = AttentionInputs(
        positions=index,
        segment_ids=segment_ids,
        kv_segment_ids=segment_ids,
        q_index=index,
        kv_index=index,
        collect_kv=True,
    )
    hidden, kv = self._backbone(tokens, inputs)
    last = hidden[jnp.arange(g), lengths - 1]
    logits = self.logits_from_hidden(last[:, None])[:, 0].astype(jnp.float32)
    return logits, kv["k"], kv["v"]


def init_slot_cache(config: ModelConfig, batch_size: int, capacity: int, dtype=None) -> SlotCache:
  """An empty `SlotCache` of `batch_size` rows with `capacity` slots each."""
  dtype = jnp.dtype(dtype or config.dtype)
  kv, hd = config.num_kv_heads, config.dim_per_head
  return SlotCache(
      tuple(
          LayerSlots(
              jnp.zeros((batch_size, kv, hd, capacity), dtype),
              jnp.zeros((batch_size, kv, capacity, hd), dtype),
          )
          for _ in range(config.num_layers)
      )
  )


def unstack_layers(params) -> dict:
  """`params` in the `scan_layers=False` layout (`layers_0`, `layers_1`, ...).

  For stacked (scanned) params this copies the layer weights (`decode_weights` starts from it:
  slicing layer i out of the stacked weights inside the decode loop copied every weight on every
  step, a third of the step on CPU).
  """
  params = nn.unbox(params)
  if "layers" not in params:
    return params
  stacked = params["layers"]
  num_layers = jax.tree.leaves(stacked)[0].shape[0]
  out = {name: value for name, value in params.items() if name != "layers"}
  for i in range(num_layers):
    out[f"layers_{i}"] = jax.tree.map(lambda p, i=i: p[i], stacked)
  return out


def _weight_major(kernel, in_axes: int):
  """A kernel [*in, *out] as the matrix [out, in] (`decode_step`'s layout)."""
  n_in = int(np.prod(kernel.shape[:in_axes]))
  return kernel.reshape(n_in, -1).T


def decode_weights(config: ModelConfig, params) -> dict:
  """The weights `decode_step` runs on, computed once per generation call.

  Every projection becomes a weight-major matrix [out, in] in the compute dtype, one entry per
  layer (no layer axis to slice inside the decode loop), with LoRA adapters merged
  (kernel + scale A B, as an export merges them). Biases are flattened to [out]. The tied
  embedding [vocab, embed] is already weight-major and is not copied into a second head.
  """
  params = unstack_layers(params)
  dt = _dtype(config.dtype)
  scale = config.lora.scale if config.lora is not None else 0.0

  def matrix(module, in_axes):
    kernel = module["kernel"]
    if "lora_a" in module:
      kernel = lora_lib.merge_kernel(kernel, module["lora_a"], module["lora_b"], scale, xp=jnp)
    return _weight_major(kernel, in_axes).astype(dt)

  def linear(module, in_axes=1):
    out = {"w": matrix(module, in_axes)}
    if "bias" in module:
      out["b"] = module["bias"].reshape(-1).astype(dt)
    return out

  layers = []
  for i in range(config.num_layers):
    layer = params[f"layers_{i}"]
    attn, mlp = layer["self_attn"], layer["mlp"]
    layers.append(
        dict(
            input_norm=layer["input_layernorm"]["scale"],
            post_norm=layer["post_attention_layernorm"]["scale"],
            q=linear(attn["q_proj"]),
            k=linear(attn["k_proj"]),
            v=linear(attn["v_proj"]),
            o=linear(attn["o_proj"], in_axes=2),
            gate=linear(mlp["gate_proj"]),
            up=linear(mlp["up_proj"]),
            down=linear(mlp["down_proj"]),
        )
    )
  out = dict(
      embed=params["embed_tokens"]["embedding"].astype(dt),
      norm=params["norm"]["scale"],
      layers=tuple(layers),
  )
  if not config.tie_word_embeddings:
    out["head"] = linear(params["lm_head"])
  return out


def _weight_major_product(linear: dict, x: Array) -> Array:
  """x [B, in] -> [B, out] through a `decode_weights` projection, computed as w . x^T.

  At decode batch sizes XLA's CPU dots ran 1.4-1.9x faster with the weight [out, in] as the left
  operand and the tokens as the right (both contiguous along the contracted axis) than as
  x . w (docs/benchmarks.md, generation). The barrier keeps XLA from folding the transpose of the
  small result back into the dot, which would turn it into the slow x . w^T form.
  """
  y = jax.lax.optimization_barrier(jnp.dot(linear["w"], x.astype(linear["w"].dtype).T)).T
  return y + linear["b"] if "b" in linear else y


def decode_step(
    config: ModelConfig,
    weights: dict,
    tokens: Array,
    positions: Array,
    cache: SlotCache,
    kv_len: int | None = None,
) -> tuple[Array, SlotCache]:
  """One token per row on a `SlotCache`: tokens [B] at `positions` [B] (= their slots).

  `weights` from `decode_weights` (done once by the caller). The same network as
  `LlamaDecoder` (tests/models/test_decode_step.py holds it to the modules' forward), written for
  one token per row: the layers run unrolled, each on its own weights and cache buffer, so nothing
  is sliced or copied per step and XLA writes the carried cache in place (`nn.scan` with the
  cache as a scanned input and output copied both caches, 71 MB each at batch 32, in and out of
  the loop on every step), and every projection is a weight-major product
  (`_weight_major_product`). Returns (fp32 logits [B, V], the cache with this token's keys and
  values written). `kv_len` (static) limits attention to slots [0, kv_len), which must hold every
  row's position.
  """
  if "layers" not in weights or "embed" not in weights:
    raise ValueError("decode_step: give the weights from llama.decode_weights")
  b = tokens.shape[0]
  heads, kv_heads, hd = config.num_heads, config.num_kv_heads, config.dim_per_head
  dt = _dtype(config.dtype)
  inv_freq = inverse_frequencies(config)
  rope_positions = positions[:, None]
  x = jnp.take(weights["embed"], tokens, axis=0).astype(dt)
  new_layers = []
  for w, layer_cache in zip(weights["layers"], cache.layers):
    h = rms_norm(x, w["input_norm"], config.rms_norm_eps, dt)
    q = _weight_major_product(w["q"], h).reshape(b, 1, heads, hd)
    k = _weight_major_product(w["k"], h).reshape(b, 1, kv_heads, hd)
    v = _weight_major_product(w["v"], h).reshape(b, 1, kv_heads, hd)
    q = apply_rope(q, rope_positions, inv_freq)
    k = apply_rope(k, rope_positions, inv_freq)
    layer_cache = layer_cache.write(k[:, 0], v[:, 0], positions)
    new_layers.append(layer_cache)
    out = attention_lib.slot_decode_attention(
        q,
        layer_cache.k.astype(dt),
        layer_cache.v.astype(dt),
        positions,
        sliding_window=config.sliding_window,
        kv_len=kv_len,
    )
    x = x + _weight_major_product(w["o"], out.reshape(b, heads * hd))
    h = rms_norm(x, w["post_norm"], config.rms_norm_eps, dt)
    gate, up = _weight_major_product(w["gate"], h), _weight_major_product(w["up"], h)
    x = x + _weight_major_product(w["down"], nn.silu(gate) * up)
  x = rms_norm(x, weights["norm"], config.rms_norm_eps, dt)
  head = weights.get("head", {"w": weights["embed"]})
  return _weight_major_product(head, x).astype(jnp.float32), SlotCache(tuple(new_layers))


def init_params(config: ModelConfig, rng: jax.Array):
  """Random params, boxed with their logical axis names: the one place `model.init` runs."""
  return LlamaDecoder(config).init(rng, jnp.ones((1, 1), jnp.int32))["params"]


def abstract_params(config: ModelConfig):
  """`init_params`' tree as boxed `jax.ShapeDtypeStruct`s; nothing is allocated or compiled.

  The `nn.LogicallyPartitioned` boxes keep the logical axis names for
  `sharding.logical_shardings`; `nn.unbox` the result for plain shapes.
  """
  return jax.eval_shape(functools.partial(init_params, config), jax.random.PRNGKey(0))


def positions_from_segment_ids(segment_ids: Array) -> Array:
  """Per-segment positions 0, 1, ... that restart wherever the segment id changes."""
  b, t = segment_ids.shape
  idx = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
  starts = jnp.concatenate(
      [jnp.ones((b, 1), bool), segment_ids[:, 1:] != segment_ids[:, :-1]], axis=1
  )
  segment_start = jax.lax.cummax(jnp.where(starts, idx, 0), axis=1)
  return idx - segment_start


def init_cache(config: ModelConfig, batch_size: int, max_length: int, dtype=None) -> dict:
  """An empty KV cache: k/v [layers, B, S, kv_heads, head_dim], all slots segment 0 (empty)."""
  dtype = jnp.dtype(dtype or config.dtype)
  shape = (config.num_layers, batch_size, max_length, config.num_kv_heads, config.dim_per_head)
  return {
      "k": jnp.zeros(shape, dtype),
      "v": jnp.zeros(shape, dtype),
      "segment_ids": jnp.zeros((batch_size, max_length), jnp.int32),
      "index": jnp.zeros((), jnp.int32),
  }
