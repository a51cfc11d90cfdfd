"""Tiny random Hugging Face checkpoints made inside the tests (the independent reference)."""

from __future__ import annotations

import torch
import transformers

# Small but not degenerate: GQA (4 query heads per 2 kv heads), head_dim != hidden/heads where the
# architecture allows it, several layers so the scan and the layer stacking are exercised.
_COMMON = dict(
    vocab_size=96,
    hidden_size=64,
    intermediate_size=112,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    rms_norm_eps=1e-5,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)

CONFIGS = {
    "llama31": lambda: transformers.LlamaConfig(
        **_COMMON,
        head_dim=24,
        tie_word_embeddings=False,
        rope_theta=500000.0,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 32,
        },
    ),
    "mistral": lambda: transformers.MistralConfig(
        **_COMMON, sliding_window=5, tie_word_embeddings=False, rope_theta=10000.0
    ),
    "qwen2": lambda: transformers.Qwen2Config(
        **_COMMON, tie_word_embeddings=False, rope_theta=1000000.0
    ),
    "tied": lambda: transformers.LlamaConfig(
        **_COMMON, tie_word_embeddings=True, rope_theta=10000.0
    ),
}


def make_hf_model(kind: str, directory, seed: int = 0, dtype=torch.float32, **overrides):
  """Creates, saves (safetensors) and returns a random tiny model of the given family."""
  torch.manual_seed(seed)
  config = CONFIGS[kind]()
  for k, v in overrides.items():
    setattr(config, k, v)
  model = transformers.AutoModelForCausalLM.from_config(
      config, attn_implementation="eager", dtype=dtype
  )
  # Random init leaves biases and norms at 0/1; perturb everything so each tensor matters.
  with torch.no_grad():
    for p in model.parameters():
      p.add_(torch.randn_like(p) * 0.05)
  model.eval()
  model.save_pretrained(str(directory))
  return model


def hf_logits(model, tokens):
  with torch.no_grad():
    return model(torch.as_tensor(tokens, dtype=torch.long)).logits.float().numpy()
