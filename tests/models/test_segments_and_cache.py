"""Packed-segment isolation and the KV-cache decode path."""

import hf_testing
import jax
import jax.numpy as jnp
import numpy as np
import torch

from langshift.checkpoints.hf_import import load_hf_model
from langshift.models.llama import LlamaDecoder, init_cache, positions_from_segment_ids


def test_positions_restart_per_segment():
  seg = jnp.asarray([[1, 1, 1, 2, 2, 3, 0, 0]])
  np.testing.assert_array_equal(positions_from_segment_ids(seg), [[0, 1, 2, 0, 1, 0, 0, 1]])


def test_packed_row_equals_documents_run_separately(tmp_path):
  hf_testing.make_hf_model("mistral", tmp_path)  # sliding window must also respect segments
  cfg, params = load_hf_model(str(tmp_path))
  model = LlamaDecoder(cfg)
  rng = np.random.default_rng(0)
  doc_a, doc_b = rng.integers(3, 96, size=11), rng.integers(3, 96, size=7)
  packed = np.concatenate([doc_a, doc_b, [0, 0]])[None]
  seg = np.asarray([[1] * 11 + [2] * 7 + [0, 0]])
  out = np.asarray(
      model.apply({"params": params}, jnp.asarray(packed), segment_ids=jnp.asarray(seg))
  )
  alone_a = np.asarray(model.apply({"params": params}, jnp.asarray(doc_a[None])))
  alone_b = np.asarray(model.apply({"params": params}, jnp.asarray(doc_b[None])))
  np.testing.assert_allclose(out[0, :11], alone_a[0], atol=1e-5)
  np.testing.assert_allclose(out[0, 11:18], alone_b[0], atol=1e-5)
  # Without segment ids document b would see document a: the test must be able to fail.
  leaky = np.asarray(model.apply({"params": params}, jnp.asarray(packed)))
  assert np.abs(leaky[0, 11:18] - alone_b[0]).max() > 1e-2


def _greedy_with_cache(model, params, cfg, prompt, steps):
  """Prefill then one token per step; prompts left-padded with segment id 0."""
  b, p = prompt.shape
  seg = (prompt != 0).astype(np.int32)  # pad id 0 on the left
  pos = np.maximum(np.cumsum(seg, axis=1) - 1, 0)
  cache = init_cache(cfg, b, p + steps)
  decode = jax.jit(lambda *a: model.apply({"params": params}, *a, method="decode"))
  logits, cache = decode(jnp.asarray(prompt), jnp.asarray(pos), jnp.asarray(seg), cache)
  next_pos = pos[:, -1] + 1
  out = []
  tok = jnp.argmax(logits[:, -1], axis=-1)
  for _ in range(steps):
    out.append(np.asarray(tok))
    logits, cache = decode(
        tok[:, None], jnp.asarray(next_pos)[:, None], jnp.ones((b, 1), jnp.int32), cache
    )
    next_pos = next_pos + 1
    tok = jnp.argmax(logits[:, -1], axis=-1)
  return np.stack(out, axis=1)


def test_kv_cache_greedy_decoding_matches_transformers_generate(tmp_path):
  hf_model = hf_testing.make_hf_model("llama31", tmp_path)
  cfg, params = load_hf_model(str(tmp_path))
  model = LlamaDecoder(cfg)
  rng = np.random.default_rng(3)
  prompts = [rng.integers(3, 96, size=9), rng.integers(3, 96, size=6)]
  ours = _greedy_with_cache(
      model, params, cfg, np.stack([prompts[0], np.pad(prompts[1], (3, 0))]), 16
  )
  for i, prompt in enumerate(prompts):  # transformers one prompt at a time: no padding at all
    ref = hf_model.generate(
        torch.as_tensor(prompt[None]),
        max_new_tokens=16,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=0,
        min_new_tokens=16,
    )
    np.testing.assert_array_equal(ours[i], ref[0, len(prompt) :].numpy())


def test_decode_logits_equal_full_forward(tmp_path):
  hf_testing.make_hf_model("mistral", tmp_path)  # window 5 < 12 tokens: cache must window too
  cfg, params = load_hf_model(str(tmp_path))
  model = LlamaDecoder(cfg)
  tokens = np.random.default_rng(4).integers(3, 96, size=(1, 12))
  full = np.asarray(model.apply({"params": params}, jnp.asarray(tokens)))
  cache = init_cache(cfg, 1, 12)
  steps = []
  for t in range(12):
    logits, cache = model.apply(
        {"params": params},
        jnp.asarray(tokens[:, t : t + 1]),
        jnp.asarray([[t]]),
        jnp.ones((1, 1), jnp.int32),
        cache,
        method="decode",
    )
    steps.append(np.asarray(logits[:, 0]))
  np.testing.assert_allclose(np.stack(steps, axis=1), full, atol=1e-5)
