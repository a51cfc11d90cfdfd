"""Causal grouped-query attention with packed-segment masking, behind one implementation switch.

Every implementation computes the same function (the generation engine's one-token step,
`slot_decode_attention`, too):
  query i may attend key j  iff  seg[i] == seg[j]  and  j <= i  and  i - j < sliding_window,
where i, j are slot indices in the row (positions in the training row, cache slots when decoding).
Segment ids keep packed documents apart; id 0 marks padding.

* `xla`    — plain einsums, fp32 softmax; runs everywhere and is the reference.
* `cudnn`  — `jax.nn.dot_product_attention(implementation="cudnn")` (GPU flash attention).
* `splash` — the Pallas splash-attention kernel (TPU); `interpret=True` runs it on CPU for tests.
"""

from __future__ import annotations

import contextlib
import contextvars

import jax
import jax.numpy as jnp
import numpy as np

_MASK_VALUE = float(np.finfo(np.float32).min)

# The platform a program is being lowered for when that is not the one running (`langshift.aot`
# compiles TPU and GPU programs on a CPU): kernels are then lowered for it, never interpreted, and
# a row the requested kernel cannot take is an error naming it rather than a fallback to XLA.
_LOWERING_FOR = contextvars.ContextVar("attention_lowering_for", default=None)


@contextlib.contextmanager
def lowering_for(platform: str):
  """Within this context, attention is lowered for `platform` ("tpu", "cuda") strictly."""
  token = _LOWERING_FOR.set(platform)
  try:
    yield
  finally:
    _LOWERING_FOR.reset(token)


def attention_mask(q_segment_ids, kv_segment_ids, q_index, kv_index, sliding_window=None):
  """Boolean mask [batch, 1, q_len, kv_len] from segment ids and slot indices."""
  same_segment = q_segment_ids[:, :, None] == kv_segment_ids[:, None, :]
  causal = q_index[:, :, None] >= kv_index[:, None, :]
  mask = same_segment & causal
  if sliding_window is not None:
    mask &= (q_index[:, :, None] - kv_index[:, None, :]) < sliding_window
  return mask[:, None, :, :]


def xla_attention(q, k, v, mask):
  """q [B,T,H,D], k/v [B,S,K,D], mask [B,1,T,S] -> [B,T,H,D]. Softmax in fp32."""
  b, t, h, d = q.shape
  kv_heads = k.shape[2]
  q = q.reshape(b, t, kv_heads, h // kv_heads, d)
  logits = jnp.einsum("btkgd,bskd->bkgts", q, k, preferred_element_type=jnp.float32)
  logits = logits * (1.0 / np.sqrt(d))
  logits = jnp.where(mask[:, :, None], logits, _MASK_VALUE)
  probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
  out = jnp.einsum("bkgts,bskd->btkgd", probs, v)
  return out.reshape(b, t, h, d)


def slot_decode_attention(q, k_t, v, positions, sliding_window=None, kv_len=None):
  """One new query per row against the row's KV cache slots (the generation engine's step).

  q [B, 1, H, D]; k_t [B, K, D, S] (keys transposed); v [B, K, S, D]; positions [B]: the query's
  slot, which is also its position, so slot j is visible iff j <= position (and within the
  sliding window). `kv_len` (static) reads only slots [0, kv_len): the caller guarantees every
  row's position is below it. Same function as `xla_attention` with a causal mask.
  """
  b, _, h, d = q.shape
  kv_heads = k_t.shape[1]
  if kv_len is not None and kv_len < v.shape[2]:
    k_t, v = k_t[..., :kv_len], v[:, :, :kv_len]
  q = q.reshape(b, kv_heads, h // kv_heads, d)
  logits = jnp.einsum("bkgd,bkds->bkgs", q, k_t, preferred_element_type=jnp.float32)
  logits = logits * (1.0 / np.sqrt(d))
  slots = jnp.arange(v.shape[2], dtype=jnp.int32)[None, :]
  visible = slots <= positions[:, None]
  if sliding_window is not None:
    visible &= (positions[:, None] - slots) < sliding_window
  logits = jnp.where(visible[:, None, None, :], logits, _MASK_VALUE)
  probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
  out = jnp.einsum("bkgs,bksd->bkgd", probs, v)
  return out.reshape(b, 1, h, d)


def blocked_causal_attention(q, k, v, segment_ids, sliding_window=None, block=128):
  """XLA attention for training rows that skips key blocks a query block cannot see.

  Same function as `xla_attention` with the causal mask, but query block i only multiplies keys
  [start_i, end_i): about (n+1)/2n of the full T x T work and memory (5/8 at T = 4 blocks), and
  less again under a sliding window. Heads-major layout keeps both einsums plain batched matmuls.
  """
  b, t, h, d = q.shape
  kv_heads = k.shape[2]
  g = h // kv_heads
  qh = q.reshape(b, t, kv_heads, g, d).transpose(0, 2, 3, 1, 4) * (1.0 / np.sqrt(d)).astype(q.dtype)
  kh, vh = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)
  pos = jnp.arange(t)
  outs = []
  for i in range(t // block):
    q0, q1 = i * block, (i + 1) * block
    k0 = 0 if sliding_window is None else max(0, (q0 - sliding_window + 1) // block * block)
    logits = jnp.einsum(
        "bkgqd,bksd->bkgqs", qh[:, :, :, q0:q1], kh[:, :, k0:q1], preferred_element_type=jnp.float32
    )
    mask = pos[q0:q1, None] >= pos[None, k0:q1]
    if sliding_window is not None:
      mask &= (pos[q0:q1, None] - pos[None, k0:q1]) < sliding_window
    mask = mask[None] & (segment_ids[:, q0:q1, None] == segment_ids[:, None, k0:q1])
    logits = jnp.where(mask[:, None, None], logits, _MASK_VALUE)
    probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    outs.append(jnp.einsum("bkgqs,bksd->bkgqd", probs, vh[:, :, k0:q1]))
  out = jnp.concatenate(outs, axis=3)  # [b, kv_heads, g, t, d]
  return out.transpose(0, 3, 1, 2, 4).reshape(b, t, h, d)


def cudnn_attention(q, k, v, segment_ids, sliding_window=None):
  """cuDNN flash attention for training rows (query slots == key slots)."""
  h, kv_heads = q.shape[2], k.shape[2]
  if h != kv_heads:  # cuDNN takes GQA natively when heads divide; keep the call simple and exact.
    k = jnp.repeat(k, h // kv_heads, axis=2)
    v = jnp.repeat(v, h // kv_heads, axis=2)
  mask = None
  if segment_ids is not None:
    mask = (segment_ids[:, :, None] == segment_ids[:, None, :])[:, None]
  window = None if sliding_window is None else (sliding_window - 1, 0)
  return jax.nn.dot_product_attention(
      q, k, v, mask=mask, is_causal=True, local_window_size=window, implementation="cudnn"
  )


def splash_attention(q, k, v, segment_ids, sliding_window=None, interpret=False):
  """Pallas splash attention for training rows; q [B,T,H,D], k/v [B,T,K,D]."""
  from jax.experimental.pallas.ops.tpu import splash_attention as splash  # TPU-only module.

  b, t, h, d = q.shape
  kv_heads = k.shape[2]
  if kv_heads != h:
    k = jnp.repeat(k, h // kv_heads, axis=2)
    v = jnp.repeat(v, h // kv_heads, axis=2)
  if sliding_window is None:
    one = splash.CausalMask(shape=(t, t))
  else:
    one = splash.LocalMask(shape=(t, t), window_size=(sliding_window - 1, 0), offset=0)
  block = min(512, t)
  kernel = splash.make_splash_mha_single_device(
      splash.MultiHeadMask([one] * h),
      block_sizes=splash.BlockSizes(
          block_q=block,
          block_kv=block,
          block_kv_compute=block,
          block_q_dkv=block,
          block_kv_dkv=block,
          block_kv_dkv_compute=block,
          block_q_dq=block,
          block_kv_dq=block,
      ),
      interpret=interpret,
  )
  if segment_ids is None:
    segment_ids = jnp.ones((b, t), jnp.int32)
  # Splash takes [heads, length, head_dim] per example and does not scale the logits.
  q = jnp.swapaxes(q, 1, 2) * (1.0 / np.sqrt(d)).astype(q.dtype)
  k, v = jnp.swapaxes(k, 1, 2), jnp.swapaxes(v, 1, 2)
  seg = splash.SegmentIds(q=segment_ids, kv=segment_ids)
  out = jax.vmap(kernel)(q, k, v, segment_ids=seg)
  return jnp.swapaxes(out, 1, 2)


def _per_shard(fn, q, k, v, segment_ids):
  """Runs a kernel that XLA cannot partition on each device's shard of a mesh.

  Pallas kernels are opaque to GSPMD; under a mesh they must see local blocks. Batch is split
  over (data, fsdp) and heads over tensor, exactly as the activation rules place them.
  """
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or mesh.size == 1:
    return fn(q, k, v, segment_ids)
  from jax.sharding import PartitionSpec as P

  batch = tuple(a for a in ("data", "fsdp") if a in mesh.axis_names)
  heads = "tensor" if "tensor" in mesh.axis_names else None
  qkv = P(batch, None, heads, None)
  return jax.shard_map(
      fn, mesh=mesh, in_specs=(qkv, qkv, qkv, P(batch, None)), out_specs=qkv, check_vma=False
  )(q, k, v, segment_ids)


def causal_block(length: int) -> int | None:
  """The query block of `blocked_causal_attention` for rows of `length`, None for the masked
  path. Forward passes on CPU (docs/benchmarks.md): 32-row blocks took 3.2x less time than the
  masked path at 16 x 192, 64-row blocks 3.7x less at 512; long training rows keep 128-row blocks
  (fewer unrolled blocks to compile)."""
  for block, shortest in ((128, 1024), (64, 256), (32, 64)):
    if length % block == 0 and length >= shortest:
      return block
  return None


def dot_product_attention(
    q,
    k,
    v,
    *,
    q_segment_ids,
    kv_segment_ids,
    q_index,
    kv_index,
    sliding_window=None,
    impl="xla",
    decoding=False,
):
  """Dispatches to an implementation; decoding (KV cache) always uses the XLA path."""
  # Splash tiles the sequence in blocks of 128 lanes: shorter or ragged rows (shape-only init
  # traces, short evals) take the XLA path, which computes the same function.
  lowering_for_platform = _LOWERING_FOR.get()
  if impl == "splash" and q.shape[1] % 128 and not decoding:
    if lowering_for_platform is not None:
      raise ValueError(
          f"attention_impl=splash cannot lower rows of {q.shape[1]} tokens (not a multiple of "
          "128); use a multiple of 128 or attention_impl=xla"
      )
    impl = "xla"
  if impl == "splash" and q.shape[1] % 128:
    impl = "xla"
  block = causal_block(q.shape[1]) if impl == "xla" and not decoding else None
  if block:
    return blocked_causal_attention(q, k, v, q_segment_ids, sliding_window, block=block)
  if impl == "xla" or decoding:
    mask = attention_mask(q_segment_ids, kv_segment_ids, q_index, kv_index, sliding_window)
    return xla_attention(q, k, v, mask)
  if impl == "cudnn":
    return cudnn_attention(q, k, v, q_segment_ids, sliding_window)
  if impl == "splash":
    interpret = (lowering_for_platform or jax.default_backend()) != "tpu"

    def fn(q, k, v, s):
      return splash_attention(q, k, v, s, sliding_window, interpret=interpret)

    return _per_shard(fn, q, k, v, q_segment_ids)
  raise ValueError(f"attention_impl={impl!r} is not one of xla, cudnn, splash")
