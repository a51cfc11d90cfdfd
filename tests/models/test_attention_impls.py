"""Attention implementations agree with the XLA reference on packed, windowed rows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from langshift.models import attention


def _inputs(t=128, window=None):
  rng = np.random.default_rng(0)
  q = jnp.asarray(rng.normal(size=(2, t, 4, 32)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(2, t, 2, 32)), jnp.float32)
  v = jnp.asarray(rng.normal(size=(2, t, 2, 32)), jnp.float32)
  seg = jnp.asarray(np.repeat([[1, 2], [1, 1]], t // 2, axis=1), jnp.int32)
  idx = jnp.broadcast_to(jnp.arange(t), (2, t))
  ref = attention.xla_attention(q, k, v, attention.attention_mask(seg, seg, idx, idx, window))
  return q, k, v, seg, ref


@pytest.mark.parametrize("window", [None, 16])
def test_splash_kernel_in_interpret_mode_matches_xla(window):
  pytest.importorskip("jax.experimental.pallas.ops.tpu.splash_attention")
  q, k, v, seg, ref = _inputs(window=window)
  try:
    out = attention.splash_attention(q, k, v, seg, window, interpret=True)
  except NotImplementedError as e:  # interpret mode unavailable for this jax build
    pytest.skip(f"splash interpret mode: {e}")
  np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=2e-5)


def test_mask_semantics():
  seg = jnp.asarray([[1, 1, 2, 2, 2]])
  idx = jnp.arange(5)[None]
  m = np.asarray(attention.attention_mask(seg, seg, idx, idx, sliding_window=2))[0, 0]
  expected = np.array(
      [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 1, 1]], bool
  )
  np.testing.assert_array_equal(m, expected)


def test_splash_under_an_8_device_mesh_matches_xla(tmp_path):
  """The model with attention_impl=splash, sharded data 2 x fsdp 2 x tensor 2 (interpret mode)."""
  import flax.linen as nn
  import hf_testing

  from langshift.checkpoints.hf_import import load_hf_model
  from langshift.models.llama import LlamaDecoder
  from langshift.parallel import sharding
  from langshift.parallel.mesh import create_mesh

  hf_testing.make_hf_model("qwen2", tmp_path)
  cfg, params = load_hf_model(str(tmp_path))
  tokens = jnp.asarray(np.random.default_rng(0).integers(0, 96, size=(4, 128)))
  seg = jnp.asarray(np.repeat([[1, 2]], 64, axis=1).repeat(4, axis=0))
  ref = LlamaDecoder(cfg).apply({"params": params}, tokens, segment_ids=seg)
  mesh = create_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  _, sharded = load_hf_model(str(tmp_path), mesh=mesh, attention_impl="splash")
  model = LlamaDecoder(cfg.replace(attention_impl="splash"))

  @jax.jit
  def forward(p, t, s):
    with nn.logical_axis_rules(sharding.DEFAULT_LOGICAL_RULES):
      return model.apply({"params": p}, t, segment_ids=s)

  with jax.set_mesh(mesh):
    out = forward(
        sharded,
        jax.device_put(tokens, sharding.batch_sharding(mesh)),
        jax.device_put(seg, sharding.batch_sharding(mesh)),
    )
  np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-4)


@pytest.mark.parametrize(
    "t,window,block",
    [(256, None, 128), (384, None, 128), (384, 150, 128), (96, 50, 32), (192, None, 64)],
)
def test_blocked_causal_attention_matches_full_xla(t, window, block):
  q, k, v, seg, ref = _inputs(t=t, window=window)
  out = attention.blocked_causal_attention(q, k, v, seg, window, block=block)
  np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-5)
  idx = jnp.broadcast_to(jnp.arange(t), (2, t))
  dispatched = attention.dot_product_attention(
      q,
      k,
      v,
      q_segment_ids=seg,
      kv_segment_ids=seg,
      q_index=idx,
      kv_index=idx,
      sliding_window=window,
  )
  np.testing.assert_allclose(np.asarray(dispatched), np.asarray(ref), atol=1e-5)


def test_forward_passes_take_the_blocked_path_where_rows_divide_into_blocks():
  assert [attention.causal_block(t) for t in (48, 64, 96, 192, 256, 384, 512, 1024, 2048)] == [
      None,
      32,
      32,
      32,
      64,
      64,
      64,
      128,
      128,
  ]
