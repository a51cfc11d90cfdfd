"""Tiny random models of the published models' kinds, written as Hugging Face directories by
langshift's own exporter (`langshift.checkpoints.hf_export`), with a tokenizer of their family.

  llama3    Llama-3-8B(-Instruct): llama3 rope scaling, GQA, untied head
  mistral   Mistral-7B-v0.1: a sliding window shorter than the rehearsals' rows, untied head
  qwen2     Qwen1.5-Chat: q/k/v biases, untied head
  smollm2   SmolLM2-Instruct: a Llama with tied embeddings
"""

from __future__ import annotations

import jax
from flax import linen as nn

from langshift.checkpoints.hf_config import model_config_from_hf
from langshift.checkpoints.hf_export import export_hf_model
from langshift.models.llama import init_params
from langshift.rehearsal import tokenizers as tokenizers_lib
from langshift.tokenization.tokenizer import load_tokenizer

# Small, not degenerate: GQA (2 query heads per kv head), two layers for the scan.
_COMMON = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=8192,
    rms_norm_eps=1e-5,
    hidden_act="silu",
)
FAMILIES = {
    "llama3": dict(
        model_type="llama",
        tokenizer="llama3",
        rope_theta=500000.0,
        tie_word_embeddings=False,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
    ),
    "mistral": dict(
        model_type="mistral",
        tokenizer="mistral",
        rope_theta=10000.0,
        tie_word_embeddings=False,
        sliding_window=16,
    ),
    "qwen2": dict(
        model_type="qwen2",
        tokenizer="qwen",
        rope_theta=1000000.0,
        tie_word_embeddings=False,
        attention_bias=True,
    ),
    "smollm2": dict(
        model_type="llama", tokenizer="smollm2", rope_theta=100000.0, tie_word_embeddings=True
    ),
}


def write_tiny_model(family: str, directory: str, *, chat: bool, seed: int = 0) -> str:
  """A random model of `family` with its tokenizer (`chat`: an instruct model's) in `directory`."""
  if family not in FAMILIES:
    raise ValueError(f"model family {family!r}; expected one of {tuple(FAMILIES)}")
  spec = dict(FAMILIES[family])
  tokenizers_lib.write_tokenizer(spec.pop("tokenizer"), directory, chat=chat)
  tok = load_tokenizer(directory)
  vocab = tok.vocab_size
  hf = dict(
      _COMMON,
      **spec,
      vocab_size=vocab,
      bos_token_id=tok.bos_id,
      eos_token_id=tok.eos_id,
      pad_token_id=tok.pad_id,
  )
  cfg = model_config_from_hf(hf, source=f"rehearsal model {family}")
  params = nn.unbox(init_params(cfg, jax.random.PRNGKey(seed)))
  # Larger weights than the 0.02 init, so that greedy answers are not one repeated token.
  params = jax.tree.map(lambda p: p * 5.0 if p.ndim >= 2 else p, params)
  export_hf_model(params, cfg, directory, tokenizer_dir=directory, dtype="float32")
  return directory
