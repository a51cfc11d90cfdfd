"""Logit parity with transformers' PyTorch implementation (the independent reference)."""

import hf_testing
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from langshift.checkpoints.hf_import import load_hf_model
from langshift.models.llama import LlamaDecoder


@pytest.mark.parametrize("kind", ["llama31", "mistral", "qwen2", "tied"])
def test_logits_match_transformers(kind, tmp_path):
  hf_model = hf_testing.make_hf_model(kind, tmp_path)
  cfg, params = load_hf_model(str(tmp_path))
  rng = np.random.default_rng(0)
  # Length 40 > sliding_window (5) and > original_max_position_embeddings (32).
  tokens = rng.integers(0, cfg.vocab_size, size=(2, 40))
  ours = LlamaDecoder(cfg).apply({"params": params}, jnp.asarray(tokens))
  ref = hf_testing.hf_logits(hf_model, tokens)
  np.testing.assert_allclose(np.asarray(ours), ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("kind", ["llama31", "mistral"])
def test_long_rows_match_transformers(kind, tmp_path):
  """256 tokens: the blocked causal attention path (and windows that cross block edges)."""
  hf_model = hf_testing.make_hf_model(kind, tmp_path, sliding_window=150)
  cfg, params = load_hf_model(str(tmp_path))
  tokens = np.random.default_rng(5).integers(0, cfg.vocab_size, size=(1, 256))
  ours = LlamaDecoder(cfg).apply({"params": params}, jnp.asarray(tokens))
  np.testing.assert_allclose(
      np.asarray(ours), hf_testing.hf_logits(hf_model, tokens), atol=1e-4, rtol=0
  )


def test_unscanned_and_remat_variants_compute_the_same(tmp_path):
  hf_testing.make_hf_model("llama31", tmp_path)
  tokens = jnp.asarray(np.random.default_rng(1).integers(0, 96, size=(2, 16)))
  outs = []
  for overrides in (
      {},
      {"scan_layers": False},
      {"remat_policy": "full"},
      {"remat_policy": "minimal"},
  ):
    cfg, params = load_hf_model(str(tmp_path), **overrides)
    outs.append(np.asarray(LlamaDecoder(cfg).apply({"params": params}, tokens)))
  for o in outs[1:]:
    np.testing.assert_allclose(o, outs[0], atol=1e-5)


def test_bf16_compute_is_close_to_fp32(tmp_path):
  hf_testing.make_hf_model("qwen2", tmp_path)
  tokens = jnp.asarray(np.random.default_rng(2).integers(0, 96, size=(1, 24)))
  cfg32, p32 = load_hf_model(str(tmp_path))
  cfg16, p16 = load_hf_model(str(tmp_path), dtype="bfloat16", param_dtype="bfloat16")
  assert jax.tree.leaves(p16)[0].dtype == jnp.bfloat16
  l32 = LlamaDecoder(cfg32).apply({"params": p32}, tokens)
  l16 = LlamaDecoder(cfg16).apply({"params": p16}, tokens)
  assert l16.dtype == jnp.bfloat16
  assert np.abs(np.asarray(l16, np.float32) - np.asarray(l32)).max() < 0.1
