"""The table between Hugging Face tensor names/layouts and the langshift parameter tree.

HF stores Linear weights as [out, in]; we store kernels as [in, ...out] split per head, so each
entry carries the two reshapes. Per-layer tensors map onto the scanned `layers` axis (or onto
`layers_{i}` modules when layers are not scanned).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from langshift.models.config import ModelConfig


@dataclasses.dataclass(frozen=True)
class TensorMapping:
  hf_name: str  # with "{layer}" for per-layer tensors
  path: tuple[str, ...]  # within one layer's subtree for per-layer tensors
  to_ours: Callable[[np.ndarray], np.ndarray]
  to_hf: Callable[[np.ndarray], np.ndarray]
  hf_shape: tuple[int, ...]
  per_layer: bool


def _identity(x):
  return x


def tensor_mappings(cfg: ModelConfig) -> list[TensorMapping]:
  d, f, v = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
  h, k, hd = cfg.num_heads, cfg.num_kv_heads, cfg.dim_per_head
  out: list[TensorMapping] = [
      TensorMapping(
          "model.embed_tokens.weight",
          ("embed_tokens", "embedding"),
          _identity,
          _identity,
          (v, d),
          False,
      ),
      TensorMapping("model.norm.weight", ("norm", "scale"), _identity, _identity, (d,), False),
  ]
  if not cfg.tie_word_embeddings:
    out.append(
        TensorMapping(
            "lm_head.weight", ("lm_head", "kernel"), np.transpose, np.transpose, (v, d), False
        )
    )

  def layer(name, path, to_ours, to_hf, shape):
    out.append(TensorMapping(f"model.layers.{{layer}}.{name}", path, to_ours, to_hf, shape, True))

  for proj, heads in (("q_proj", h), ("k_proj", k), ("v_proj", k)):
    layer(
        f"self_attn.{proj}.weight",
        ("self_attn", proj, "kernel"),
        lambda w, n=heads: w.T.reshape(d, n, hd),
        lambda w, n=heads: w.reshape(d, n * hd).T,
        (heads * hd, d),
    )
    if cfg.qkv_bias:
      layer(
          f"self_attn.{proj}.bias",
          ("self_attn", proj, "bias"),
          lambda b, n=heads: b.reshape(n, hd),
          lambda b, n=heads: b.reshape(n * hd),
          (heads * hd,),
      )
  layer(
      "self_attn.o_proj.weight",
      ("self_attn", "o_proj", "kernel"),
      lambda w: w.T.reshape(h, hd, d),
      lambda w: w.reshape(h * hd, d).T,
      (d, h * hd),
  )
  if cfg.o_bias:
    layer("self_attn.o_proj.bias", ("self_attn", "o_proj", "bias"), _identity, _identity, (d,))
  for proj, shape in (("gate_proj", (f, d)), ("up_proj", (f, d)), ("down_proj", (d, f))):
    layer(f"mlp.{proj}.weight", ("mlp", proj, "kernel"), np.transpose, np.transpose, shape)
    if cfg.mlp_bias:
      layer(f"mlp.{proj}.bias", ("mlp", proj, "bias"), _identity, _identity, shape[:1])
  for norm in ("input_layernorm", "post_attention_layernorm"):
    layer(f"{norm}.weight", (norm, "scale"), _identity, _identity, (d,))
  return out


def our_path(m: TensorMapping, cfg: ModelConfig, layer: int | None = None) -> tuple[str, ...]:
  """Full path of a mapping in the param tree (scanned: one leaf for all layers)."""
  if not m.per_layer:
    return m.path
  if cfg.scan_layers:
    return ("layers",) + m.path
  return (f"layers_{layer}",) + m.path


# Tensors some HF checkpoints carry that do not change the computation.
IGNORED_HF_SUFFIXES = ("rotary_emb.inv_freq",)
