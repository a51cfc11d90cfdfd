"""Hugging Face `config.json` <-> `ModelConfig`, field by field.

Every field that changes the computation is imported or refused with a one-line error naming it:
a silently dropped `rope_theta` or `rope_scaling` is the classic way to ruin a Llama-3 run.
Both the legacy layout (`rope_theta` + `rope_scaling`) and transformers v5's `rope_parameters`
are read; exports use the legacy layout, which every transformers and vLLM release reads.
"""

from __future__ import annotations

import json
import os
from typing import Any

from langshift.models.config import ModelConfig

ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
}
_LLAMA3_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")


class ConfigError(ValueError):
  """A config.json field that langshift cannot represent exactly."""


def read_hf_config(directory: str) -> dict[str, Any]:
  path = os.path.join(directory, "config.json")
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    raise ConfigError(f"{path}: config file not found") from None
  except json.JSONDecodeError as e:
    raise ConfigError(f"{path}: not valid JSON ({e})") from None


def model_config_from_hf(
    hf: dict[str, Any], source: str = "config.json", **overrides
) -> ModelConfig:
  """Maps an HF config dict onto ModelConfig; `overrides` set numerics (dtype, remat, ...)."""

  def fail(field, why):
    raise ConfigError(f"{source}: field {field!r} = {hf.get(field)!r} {why}")

  def need(field):
    if hf.get(field) is None:
      raise ConfigError(f"{source}: required field {field!r} is missing")
    return hf[field]

  model_type = hf.get("model_type")
  if model_type not in ARCHITECTURES:
    fail("model_type", f"is not supported (supported: {', '.join(ARCHITECTURES)})")
  if hf.get("quantization_config"):
    fail("quantization_config", "is set: dequantize the checkpoint first")
  if hf.get("hidden_act", "silu") != "silu":
    fail("hidden_act", "is not supported (only 'silu')")
  if float(hf.get("attention_dropout", 0.0) or 0.0) != 0.0:
    fail("attention_dropout", "is not supported (langshift trains without dropout)")
  if float(hf.get("partial_rotary_factor", 1.0) or 1.0) != 1.0:
    fail("partial_rotary_factor", "is not supported (only full rotary embeddings)")

  rope_theta, rope_type, rope_scaling = _read_rope(hf, source)

  qkv_bias = o_bias = False
  sliding_window = None
  if model_type == "llama":
    qkv_bias = o_bias = bool(hf.get("attention_bias", False))
  elif model_type == "qwen2":
    qkv_bias = True
    layer_types = hf.get("layer_types") or []
    if hf.get("use_sliding_window") or any(t != "full_attention" for t in layer_types):
      fail("use_sliding_window", "is not supported for qwen2 (per-layer sliding windows)")
  elif model_type == "mistral":
    sliding_window = hf.get("sliding_window")
  mlp_bias = bool(hf.get("mlp_bias", False))
  if model_type != "llama" and mlp_bias:
    fail("mlp_bias", f"is not supported for {model_type}")

  num_heads = need("num_attention_heads")
  eos = hf.get("eos_token_id")
  values = dict(
      vocab_size=need("vocab_size"),
      hidden_size=need("hidden_size"),
      intermediate_size=need("intermediate_size"),
      num_layers=need("num_hidden_layers"),
      num_heads=num_heads,
      num_kv_heads=hf.get("num_key_value_heads") or num_heads,
      head_dim=hf.get("head_dim"),
      rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
      max_position_embeddings=hf.get("max_position_embeddings", 4096),
      tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
      rope_theta=rope_theta,
      rope_type=rope_type,
      rope_scaling=rope_scaling,
      qkv_bias=qkv_bias,
      o_bias=o_bias,
      mlp_bias=mlp_bias,
      sliding_window=sliding_window,
      model_type=model_type,
      bos_token_id=hf.get("bos_token_id"),
      eos_token_id=tuple(eos) if isinstance(eos, list) else eos,
      pad_token_id=hf.get("pad_token_id"),
  )
  values.update(overrides)
  try:
    return ModelConfig(**values)
  except ValueError as e:
    raise ConfigError(f"{source}: {e}") from None


def _read_rope(hf, source):
  params = hf.get("rope_parameters")
  field = "rope_parameters"
  if not params:
    params, field = hf.get("rope_scaling"), "rope_scaling"
  params = dict(params or {})
  # transformers v5 may nest per-layer-type parameters; all our models use one set.
  if "full_attention" in params and isinstance(params["full_attention"], dict):
    params = dict(params["full_attention"])
  rope_theta = float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))
  rope_type = params.get("rope_type", params.get("type", "default")) or "default"
  if rope_type == "default":
    return rope_theta, "default", ()
  if rope_type == "linear":
    keys = ("factor",)
  elif rope_type == "llama3":
    keys = _LLAMA3_KEYS
  else:
    raise ConfigError(
        f"{source}: field '{field}.rope_type' = {rope_type!r} is not supported "
        "(supported: default, linear, llama3)"
    )
  missing = [k for k in keys if params.get(k) is None]
  if missing:
    raise ConfigError(
        f"{source}: field '{field}.{missing[0]}' is required for rope_type " f"{rope_type!r}"
    )
  return rope_theta, rope_type, tuple((k, params[k]) for k in keys)


def model_config_to_hf(cfg: ModelConfig, torch_dtype: str = "bfloat16") -> dict[str, Any]:
  """The config.json transformers and vLLM need to rebuild exactly this network."""
  hf: dict[str, Any] = {
      "architectures": [ARCHITECTURES[cfg.model_type]],
      "model_type": cfg.model_type,
      "vocab_size": cfg.vocab_size,
      "hidden_size": cfg.hidden_size,
      "intermediate_size": cfg.intermediate_size,
      "num_hidden_layers": cfg.num_layers,
      "num_attention_heads": cfg.num_heads,
      "num_key_value_heads": cfg.num_kv_heads,
      "head_dim": cfg.dim_per_head,
      "hidden_act": "silu",
      "max_position_embeddings": cfg.max_position_embeddings,
      "rms_norm_eps": cfg.rms_norm_eps,
      "rope_theta": cfg.rope_theta,
      "tie_word_embeddings": cfg.tie_word_embeddings,
      "attention_dropout": 0.0,
      "initializer_range": 0.02,
      "use_cache": True,
      "bos_token_id": cfg.bos_token_id,
      "eos_token_id": list(cfg.eos_token_id)
      if isinstance(cfg.eos_token_id, tuple)
      else cfg.eos_token_id,
      "pad_token_id": cfg.pad_token_id,
      "torch_dtype": torch_dtype,
  }
  hf["rope_scaling"] = (
      None if cfg.rope_type == "default" else {"rope_type": cfg.rope_type, **cfg.rope_scaling_dict}
  )
  if cfg.model_type == "llama":
    hf["attention_bias"] = cfg.qkv_bias
    hf["mlp_bias"] = cfg.mlp_bias
  elif cfg.model_type == "mistral":
    hf["sliding_window"] = cfg.sliding_window
  elif cfg.model_type == "qwen2":
    hf["use_sliding_window"] = False
    hf["sliding_window"] = None
    hf["max_window_layers"] = cfg.num_layers
  return hf
