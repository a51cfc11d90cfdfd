"""Model shapes without weights: a checkpoint's config.json, or a preset of a published model.

Presets carry the architecture fields of the models the published settings name (their Hugging
Face config.json values), so a fit check needs neither the weights nor the file.
"""

from __future__ import annotations

import os
from typing import Any

from langshift.checkpoints import hf_config
from langshift.models.config import ModelConfig

_LLAMA3_ROPE = (
    ("factor", 8.0),
    ("high_freq_factor", 4.0),
    ("low_freq_factor", 1.0),
    ("original_max_position_embeddings", 8192),
)

PRESETS: dict[str, dict[str, Any]] = {
    # Meta-Llama-3-8B(-Instruct): InsCP, LEP, native alignment's student, pinch.
    "llama3_8b": dict(
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_layers=32,
        num_heads=32,
        num_kv_heads=8,
        rope_theta=500000.0,
        max_position_embeddings=8192,
    ),
    # Llama-3.1-8B: the same shapes with llama3 rope scaling to 128k positions.
    "llama3_1_8b": dict(
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_layers=32,
        num_heads=32,
        num_kv_heads=8,
        rope_theta=500000.0,
        rope_type="llama3",
        rope_scaling=_LLAMA3_ROPE,
        max_position_embeddings=131072,
    ),
    # Mistral-7B-v0.1: non-instructional fine-tuning's student, LEP's model=mistral.
    "mistral_7b": dict(
        vocab_size=32000,
        hidden_size=4096,
        intermediate_size=14336,
        num_layers=32,
        num_heads=32,
        num_kv_heads=8,
        max_position_embeddings=32768,
        sliding_window=4096,
        model_type="mistral",
    ),
    # Qwen1.5-4B-Chat: native alignment's worker (q/k/v biases, no GQA).
    "qwen1_5_4b": dict(
        vocab_size=151936,
        hidden_size=2560,
        intermediate_size=6912,
        num_layers=40,
        num_heads=20,
        num_kv_heads=20,
        rope_theta=5000000.0,
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        qkv_bias=True,
        model_type="qwen2",
    ),
    "smollm2_135m": dict(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_layers=30,
        num_heads=9,
        num_kv_heads=3,
        rope_theta=100000.0,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
    ),
    # Tests: seconds to compile.
    "tiny": dict(
        vocab_size=512,
        hidden_size=128,
        intermediate_size=256,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        max_position_embeddings=4096,
    ),
}


def resolve(source: str, numerics: dict[str, Any], where: str) -> ModelConfig:
  """The architecture of `source` (a preset name or a checkpoint directory) with `numerics`.

  `where` names the config key or flag `source` came from, for the one-line error.
  """
  if source in PRESETS:
    return ModelConfig(**PRESETS[source], **numerics)
  path = os.path.join(source, "config.json")
  if os.path.isfile(path):
    return hf_config.model_config_from_hf(hf_config.read_hf_config(source), source=path, **numerics)
  raise ValueError(
      f"{where}={source!r} is neither a checkpoint directory (no config.json) nor a preset; "
      f"pass --model=<preset> (one of {', '.join(PRESETS)})"
  )
