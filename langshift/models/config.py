"""Architecture hyper-parameters of the Llama-family decoder.

One frozen dataclass covers Llama-2, Llama-3/3.1/3.2, Mistral, Qwen2 and SmolLM2: they differ only
in the fields below. `langshift.checkpoints.hf_config` maps Hugging Face `config.json` files onto
it field by field and refuses what it cannot represent.
"""

from __future__ import annotations

import dataclasses
from typing import Any

# Architectures whose computation `LlamaDecoder` reproduces exactly.
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")
ATTENTION_IMPLS = ("xla", "cudnn", "splash")
REMAT_POLICIES = ("none", "minimal", "full")
ROPE_TYPES = ("default", "linear", "llama3")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Decoder architecture plus the numerics/memory knobs that do not change the math."""

  vocab_size: int = 32000
  hidden_size: int = 512
  intermediate_size: int = 1408
  num_layers: int = 8
  num_heads: int = 8
  num_kv_heads: int = 4
  head_dim: int | None = None  # None: hidden_size // num_heads (Llama default).
  rms_norm_eps: float = 1e-5
  max_position_embeddings: int = 4096
  tie_word_embeddings: bool = False
  # Rotary embeddings; rope_scaling holds the extra fields of the non-default types.
  rope_theta: float = 10000.0
  rope_type: str = "default"
  rope_scaling: tuple[tuple[str, Any], ...] = ()
  # Qwen2 has q/k/v biases; Llama's `attention_bias` adds them to q/k/v and o.
  qkv_bias: bool = False
  o_bias: bool = False
  mlp_bias: bool = False
  # Mistral: a query attends to the previous `sliding_window` positions (itself included).
  sliding_window: int | None = None
  model_type: str = "llama"
  bos_token_id: int | None = None
  eos_token_id: int | tuple[int, ...] | None = None
  pad_token_id: int | None = None
  # Low-rank adapters on the kernels `lora.targets` picks (a `langshift.models.lora.LoraConfig`);
  # None: none. Set by the trainer for `train.trainable="lora"`; exports merge them away.
  lora: Any = None

  # --- numerics and memory; none of these changes the function the model computes ---
  dtype: str = "float32"  # compute (activation) dtype
  param_dtype: str = "float32"  # master-weight dtype
  scan_layers: bool = True
  remat_policy: str = "none"
  attention_impl: str = "xla"

  def __post_init__(self):
    if self.model_type not in SUPPORTED_MODEL_TYPES:
      raise ValueError(
          f"model_type={self.model_type!r} is not supported; expected one of "
          f"{SUPPORTED_MODEL_TYPES}"
      )
    if self.attention_impl not in ATTENTION_IMPLS:
      raise ValueError(f"attention_impl={self.attention_impl!r}; expected one of {ATTENTION_IMPLS}")
    if self.remat_policy not in REMAT_POLICIES:
      raise ValueError(f"remat_policy={self.remat_policy!r}; expected one of {REMAT_POLICIES}")
    if self.rope_type not in ROPE_TYPES:
      raise ValueError(f"rope_type={self.rope_type!r}; expected one of {ROPE_TYPES}")
    if self.num_heads % self.num_kv_heads:
      raise ValueError(
          f"num_heads={self.num_heads} is not a multiple of " f"num_kv_heads={self.num_kv_heads}"
      )

  @property
  def dim_per_head(self) -> int:
    return self.head_dim if self.head_dim is not None else self.hidden_size // self.num_heads

  @property
  def rope_scaling_dict(self) -> dict[str, Any]:
    return dict(self.rope_scaling)

  def replace(self, **kwargs) -> ModelConfig:
    return dataclasses.replace(self, **kwargs)

  def num_params(self, include_embeddings: bool = True) -> int:
    """Exact parameter count (used for the 6·N·T FLOP convention and memory estimates)."""
    d, f, hd = self.hidden_size, self.intermediate_size, self.dim_per_head
    attn = d * hd * (self.num_heads * 2 + self.num_kv_heads * 2)
    if self.qkv_bias:
      attn += hd * (self.num_heads + 2 * self.num_kv_heads)
    if self.o_bias:
      attn += d
    mlp = 3 * d * f + (2 * f + d if self.mlp_bias else 0)
    per_layer = attn + mlp + 2 * d
    total = self.num_layers * per_layer + d
    if include_embeddings:
      total += self.vocab_size * d * (1 if self.tie_word_embeddings else 2)
    return total


def model_config_from_dict(d: dict[str, Any]) -> ModelConfig:
  """Builds a ModelConfig from a plain dict (e.g. an ml_collections config section)."""
  fields = {f.name for f in dataclasses.fields(ModelConfig)}
  unknown = sorted(set(d) - fields)
  if unknown:
    raise ValueError(f"unknown model config field(s): {', '.join(unknown)}")
  d = dict(d)
  if isinstance(d.get("rope_scaling"), dict):
    d["rope_scaling"] = tuple(sorted(d["rope_scaling"].items()))
  if isinstance(d.get("eos_token_id"), list):
    d["eos_token_id"] = tuple(d["eos_token_id"])
  return ModelConfig(**d)
