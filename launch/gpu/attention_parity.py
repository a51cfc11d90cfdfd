"""cuDNN flash attention against the XLA reference on a GPU (launch/gpu/checks.sh).

Two comparisons in bf16, each printed as one line, exit status 1 if either is off:
  * the attention function alone: packed segments, grouped-query heads and a sliding window,
    forward and the gradients of q, k, v (`langshift.models.attention`);
  * a small decoder's logits with `attention_impl="cudnn"` against `"xla"` (same parameters).

  python launch/gpu/attention_parity.py                  # on the GPU
  python launch/gpu/attention_parity.py --candidate=xla  # the same checks on any backend (the
                                                         # blocked XLA path vs the full mask)

Errors are relative: ||candidate - reference|| / ||reference||. bf16 keeps 8 bits of mantissa,
and the two paths round the softmax at different places, hence the 2% bound.
"""

from __future__ import annotations

import argparse
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from langshift.models import attention
from langshift.models.config import ModelConfig
from langshift.models.llama import LlamaDecoder, init_params

TOLERANCE = 2e-2


def relative_error(candidate, reference) -> float:
  c, r = (np.asarray(x, np.float32) for x in (candidate, reference))
  return float(np.linalg.norm(c - r) / max(np.linalg.norm(r), 1e-30))


def _rows(batch: int, length: int, window: int | None):
  """q [B,T,H,D] (8 heads), k/v [B,T,2,D], two packed documents per row, bf16."""
  rng = np.random.default_rng(0)
  q, k, v = (jnp.asarray(rng.normal(size=(batch, length, h, 64)), jnp.bfloat16) for h in (8, 2, 2))
  cut = length // 3
  seg = np.where(np.arange(length) < cut, 1, 2)[None].repeat(batch, 0)
  return q, k, v, jnp.asarray(seg, jnp.int32), window


def attention_function(candidate: str, length: int = 256, window: int | None = 96) -> float:
  q, k, v, seg, window = _rows(2, length, window)
  index = jnp.broadcast_to(jnp.arange(length), seg.shape)

  def reference(q, k, v):
    mask = attention.attention_mask(seg, seg, index, index, window)
    return attention.xla_attention(q, k, v, mask)

  def under_test(q, k, v):
    return attention.dot_product_attention(
        q,
        k,
        v,
        q_segment_ids=seg,
        kv_segment_ids=seg,
        q_index=index,
        kv_index=index,
        sliding_window=window,
        impl=candidate,
    )

  def loss(fn):
    return jax.jit(
        jax.value_and_grad(lambda *a: jnp.sum(fn(*a).astype(jnp.float32) ** 2), (0, 1, 2))
    )

  out_ref, out = jax.jit(reference)(q, k, v), jax.jit(under_test)(q, k, v)
  (_, grads_ref), (_, grads) = loss(reference)(q, k, v), loss(under_test)(q, k, v)
  return max(
      [relative_error(out, out_ref)] + [relative_error(g, r) for g, r in zip(grads, grads_ref)]
  )


def decoder_logits(candidate: str, length: int = 256) -> float:
  config = ModelConfig(
      vocab_size=512,
      hidden_size=256,
      intermediate_size=512,
      num_layers=2,
      num_heads=4,
      num_kv_heads=2,
      dtype="bfloat16",
      param_dtype="float32",
  )
  params = nn.unbox(init_params(config, jax.random.PRNGKey(0)))
  tokens = jnp.asarray(np.random.default_rng(1).integers(0, 512, size=(2, length)), jnp.int32)
  seg = jnp.asarray(np.where(np.arange(length) < length // 2, 1, 2)[None].repeat(2, 0), jnp.int32)
  logits = {}
  for impl in ("xla", candidate):
    model = LlamaDecoder(config.replace(attention_impl=impl))
    logits[impl] = jax.jit(lambda p, t, s, m=model: m.apply({"params": p}, t, segment_ids=s))(
        params, tokens, seg
    )
  return relative_error(logits[candidate], logits["xla"])


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--candidate", default="cudnn", choices=("cudnn", "xla"))
  args = parser.parse_args(argv)
  device = jax.devices()[0]
  print(f"device: {device.device_kind} ({jax.default_backend()})")
  failed = 0
  for name, check in (
      ("attention fwd+grad", attention_function),
      ("decoder logits", decoder_logits),
  ):
    error = check(args.candidate)
    ok = error <= TOLERANCE
    failed += not ok
    print(
        f"{args.candidate} vs xla, {name}: relative error {error:.2e} "
        f"({'ok' if ok else 'FAIL'}, bound {TOLERANCE:.0e})"
    )
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
