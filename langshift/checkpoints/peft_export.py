"""Export low-rank adapters as a PEFT adapter directory that `peft` loads onto the base model.

  adapter_config.json          peft_type LORA, r, lora_alpha, lora_dropout, target_modules, ...
  adapter_model.safetensors    base_model.model.<module>.lora_A.weight [r, in]
                               base_model.model.<module>.lora_B.weight [out, r]
                               (+ base_model.model.<module>.weight for modules trained in full)

Module names and the in/out flattening come from the checkpoint table
(`langshift.checkpoints.param_mapping`): an adapter A [in..., r] becomes lora_A = A.reshape(in, r).T
and B [r, out...] becomes lora_B = B.reshape(r, out).T, the layout of the HF weight it adapts, so
`PeftModel.from_pretrained(base, dir)` computes what langshift computes (PEFT's LoRA forward is
W x + lora_B(lora_A(dropout(x))) * lora_alpha / r, as in `langshift.models.lora`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from langshift.checkpoints import hf_config
from langshift.checkpoints.param_mapping import tensor_mappings
from langshift.checkpoints.safetensors_io import write_safetensors
from langshift.models.config import ModelConfig
from langshift.parallel.host_transfer import to_host

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PREFIX = "base_model.model."
# Modules a LoRA run may train in full (train.lora.train_embeddings), as PEFT's modules_to_save.
FULL_MODULES = {
    "embed_tokens": (("embed_tokens", "embedding"), "model.embed_tokens.weight", False),
    "lm_head": (("lm_head", "kernel"), "lm_head.weight", True),
}
# config.json fields an adapter's shapes depend on: a base model that differs cannot take it.
_DIMENSIONS = (
    ("vocab_size", "vocab_size"),
    ("hidden_size", "hidden_size"),
    ("intermediate_size", "intermediate_size"),
    ("num_hidden_layers", "num_layers"),
    ("num_attention_heads", "num_heads"),
    ("num_key_value_heads", "num_kv_heads"),
)


def check_base_model(cfg: ModelConfig, base_model: str) -> None:
  """A base model whose config.json has other dimensions than `cfg` is a one-line error."""
  hf = hf_config.read_hf_config(base_model)
  for hf_key, ours in _DIMENSIONS:
    value = hf.get(hf_key)
    if hf_key == "num_key_value_heads" and value is None:
      value = hf.get("num_attention_heads")
    if value != getattr(cfg, ours):
      raise ValueError(
          f"{os.path.join(base_model, 'config.json')}: {hf_key}={value} but the adapters were "
          f"trained on a model with {hf_key}={getattr(cfg, ours)}"
      )
  head_dim = hf.get("head_dim") or hf["hidden_size"] // hf["num_attention_heads"]
  if head_dim != cfg.dim_per_head:
    raise ValueError(
        f"{os.path.join(base_model, 'config.json')}: head_dim={head_dim} but the adapters were "
        f"trained on a model with head_dim={cfg.dim_per_head}"
    )


def adapter_tensors(params, cfg: ModelConfig, modules_to_save: Sequence[str] = ()):
  """(PEFT state dict as numpy arrays, full module names that carry adapters)."""
  base = cfg.replace(lora=None)
  tensors: dict[str, np.ndarray] = {}
  modules: list[str] = []

  def parent_of(path):
    tree = params
    for k in path[:-1]:
      tree = tree[k]
    return tree

  for m in tensor_mappings(base):
    if m.path[-1] != "kernel":
      continue
    module = m.hf_name[: -len(".weight")]
    if not m.per_layer:
      places = [(module, parent_of(m.path), None)]
    elif cfg.scan_layers:
      parent = parent_of(("layers",) + m.path)
      places = [(module.format(layer=i), parent, i) for i in range(cfg.num_layers)]
    else:
      places = [
          (module.format(layer=i), parent_of((f"layers_{i}",) + m.path), None)
          for i in range(cfg.num_layers)
      ]
    for name, parent, layer in places:
      if "lora_a" not in parent:
        continue
      a, b = to_host(parent["lora_a"]), to_host(parent["lora_b"])
      if layer is not None:
        a, b = a[layer], b[layer]
      r = a.shape[-1]
      tensors[f"{PREFIX}{name}.lora_A.weight"] = a.reshape(-1, r).T
      tensors[f"{PREFIX}{name}.lora_B.weight"] = b.reshape(r, -1).T
      modules.append(name)
  for module in modules_to_save:
    if module not in FULL_MODULES:
      raise ValueError(f"modules_to_save: {module!r} is not one of {tuple(FULL_MODULES)}")
    path, hf_name, transpose = FULL_MODULES[module]
    if module == "lm_head" and cfg.tie_word_embeddings:
      continue  # tied: the embedding matrix is the output projection
    w = to_host(parent_of(path)[path[-1]])
    tensors[PREFIX + hf_name] = w.T if transpose else w
  return tensors, modules


def _target_modules(modules: list[str], cfg: ModelConfig) -> list[str]:
  """Short names ("q_proj") when every layer's module of that name is adapted, else full names
  (PEFT matches a list entry against a module name exactly or as its dotted suffix)."""
  short = sorted({m.rsplit(".", 1)[-1] for m in modules})
  for s in short:
    per_layer = [m for m in modules if m.endswith("." + s) or m == s]
    if s != "lm_head" and len(per_layer) != cfg.num_layers:
      return sorted(modules)
  return short


def export_peft_adapter(
    params,
    cfg: ModelConfig,
    out_dir: str,
    *,
    base_model: str = "",
    modules_to_save: Sequence[str] = (),
    dtype: str | None = None,
) -> str:
  """Writes `out_dir` (adapter_config.json + adapter_model.safetensors); `base_model` (a local HF
  directory) is checked for matching dimensions and recorded as base_model_name_or_path.
  `dtype=None` keeps the adapters' dtype. Every process must call it with sharded params
  (gathering is collective); process 0 writes."""
  if cfg.lora is None:
    raise ValueError("export_peft_adapter: the model config has no adapters (cfg.lora is None)")
  if "embed_tokens" in modules_to_save and cfg.tie_word_embeddings:
    raise ValueError(
        "export_peft_adapter: embed_tokens trained in full on a model with tied embeddings has no "
        "PEFT layout (modules_to_save would untie them); export the merged model instead"
    )
  if base_model:
    check_base_model(cfg, base_model)
  tensors, modules = adapter_tensors(params, cfg, modules_to_save)
  if jax.process_index() != 0:
    return out_dir
  out_dtype = None if dtype is None else np.dtype(jnp.dtype(dtype))
  tensors = {
      k: np.ascontiguousarray(v if out_dtype is None else v.astype(out_dtype))
      for k, v in tensors.items()
  }
  lora = cfg.lora
  config = {
      "peft_type": "LORA",
      "task_type": "CAUSAL_LM",
      "base_model_name_or_path": base_model or None,
      "r": lora.rank,
      "lora_alpha": lora.alpha,
      "lora_dropout": lora.dropout,
      "target_modules": _target_modules(modules, cfg),
      "modules_to_save": list(modules_to_save) or None,
      "bias": "none",
      "fan_in_fan_out": False,
      "use_rslora": False,
      "use_dora": False,
      "init_lora_weights": True,
      "inference_mode": True,
  }
  os.makedirs(out_dir, exist_ok=True)
  write_safetensors(os.path.join(out_dir, ADAPTER_WEIGHTS), tensors, metadata={"format": "pt"})
  with open(os.path.join(out_dir, ADAPTER_CONFIG), "w") as f:
    json.dump(config, f, indent=2)
  return out_dir
