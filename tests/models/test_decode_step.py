"""`llama.decode_step`, the generation engine's one-token step on weight-major `decode_weights`,
against transformers' forward pass (and the Flax modules' where adapters are involved): a prompt
fed one token per step through the slot cache gives, at every step, the logits of that position
in the full forward."""

import hf_testing
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from lora_testing import adapted, lora_section, our_logits

from langshift.checkpoints.hf_import import load_hf_model
from langshift.models import llama

LENGTH = 12


def _tokens(vocab, rows=3, seed=0):
  return np.random.default_rng(seed).integers(3, vocab, size=(rows, LENGTH)).astype(np.int32)


def _step_by_step(config, params, tokens, kv_len=None):
  """Logits [B, T, V] of feeding `tokens` one position per `decode_step`, all rows together."""
  weights = jax.jit(lambda p: llama.decode_weights(config, p))(params)
  step = jax.jit(
      lambda w, t, pos, c: llama.decode_step(config, w, t, pos, c, kv_len=kv_len),
      donate_argnums=(3,),
  )
  rows = tokens.shape[0]
  cache = llama.init_slot_cache(config, rows, LENGTH + 4)
  out = []
  for t in range(tokens.shape[1]):
    logits, cache = step(weights, jnp.asarray(tokens[:, t]), jnp.full((rows,), t, jnp.int32), cache)
    out.append(np.asarray(logits))
  return np.stack(out, axis=1)


@pytest.mark.parametrize(
    "kind, overrides",
    [
        ("llama31", {}),
        ("llama31", {"attention_bias": True, "mlp_bias": True}),  # q/k/v/o and MLP biases
        ("mistral", {}),  # sliding window 5, shorter than the prompt
        ("qwen2", {}),  # q/k/v biases
        ("tied", {}),  # the head is the embedding
    ],
)
def test_decode_steps_equal_the_transformers_forward(kind, overrides, tmp_path):
  model = hf_testing.make_hf_model(kind, tmp_path, **overrides)
  config, params = load_hf_model(str(tmp_path))
  tokens = _tokens(config.vocab_size)
  want = hf_testing.hf_logits(model, tokens)
  np.testing.assert_allclose(_step_by_step(config, params, tokens), want, atol=1e-4, rtol=1e-4)
  # Attending to the first 14 of the 16 slots only (all rows stay below it): the same logits.
  np.testing.assert_allclose(
      _step_by_step(config, params, tokens, kv_len=LENGTH + 2), want, atol=1e-4, rtol=1e-4
  )


def test_decode_weights_merge_lora_adapters(tmp_path):
  """Adapters on every projection and the head (non-zero B), scanned layers: the merged
  weight-major step gives the adapted model's forward logits."""
  hf_testing.make_hf_model("llama31", tmp_path)
  config, params = adapted(tmp_path, lora_section(targets=("attention", "mlp", "lm_head")))
  tokens = _tokens(config.vocab_size, seed=1)
  want = our_logits(config, params, tokens)
  base = our_logits(config.replace(lora=None), params, tokens)
  assert np.abs(want - base).max() > 1e-2  # the adapters matter
  np.testing.assert_allclose(_step_by_step(config, params, tokens), want, atol=1e-4, rtol=1e-4)


def test_decode_step_refuses_model_params(tmp_path):
  hf_testing.make_hf_model("tied", tmp_path)
  config, params = load_hf_model(str(tmp_path))
  cache = llama.init_slot_cache(config, 1, 4)
  with pytest.raises(ValueError, match="decode_weights"):
    llama.decode_step(config, params, jnp.ones((1,), jnp.int32), jnp.zeros((1,), jnp.int32), cache)
