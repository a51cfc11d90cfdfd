"""Low-rank adapters (LoRA; Hu et al. 2021, arXiv 2106.09685, section 4.1) on the decoder's kernels.

A targeted `Linear` computes y = x W + (alpha / r) * dropout(x) A B with A [in, r] and B [r, out]:
A starts uniform in +-1/sqrt(in) (the bound of PEFT's Kaiming-uniform init) and B at zero, so an
adapted model starts as the base model. The adapters sit in the param tree beside the kernel they
adapt (`layers/self_attn/q_proj/lora_a`, `.../lora_b`), carry the kernel's logical axis names on
their in/out axes (so they shard like their base weight; the rank axis is replicated) and keep
their own dtype (`LoraConfig.param_dtype`) whatever the base weights' dtype.

Targets are regexes over kernel paths ("layers/self_attn/q_proj/kernel"; unscanned layers are
"layers_0/...", which is how to adapt only some layers) or the presets below. Which kernels have
adapters is decided when params are created; applying the model afterwards follows the params,
so a layer applied on its own (the generation engine's unrolled decode) finds its adapters.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

TARGET_PRESETS = {
    "attention": r"self_attn/[qkvo]_proj/kernel$",
    "mlp": r"mlp/(gate|up|down)_proj/kernel$",
    "lm_head": r"^lm_head/kernel$",
}
ADAPTER_NAMES = ("lora_a", "lora_b")
# The trainable-parameter regexes of a LoRA run (optimizer.TRAINABLE_PRESETS["lora"]).
ADAPTER_PATTERN = r"/lora_[ab]$"
DROPOUT_RNG = "lora_dropout"


@dataclasses.dataclass(frozen=True)
class LoraConfig:
  rank: int = 8
  alpha: float = 16.0
  dropout: float = 0.0
  targets: tuple[str, ...] = (TARGET_PRESETS["attention"], TARGET_PRESETS["mlp"])
  param_dtype: str = "float32"

  @property
  def scale(self) -> float:
    return self.alpha / self.rank

  def targets_kernel(self, kernel_path: str) -> bool:
    return any(re.search(p, kernel_path) for p in self.targets)


def resolve_targets(targets: str | Sequence[str]) -> tuple[str, ...]:
  """Preset names ("attention", "mlp", "lm_head") become their regexes; others stay regexes."""
  if isinstance(targets, str):
    targets = (targets,)
  return tuple(TARGET_PRESETS.get(t, t) for t in targets)


def kernel_uniform_init(n_in: int):
  bound = 1.0 / np.sqrt(n_in)
  return lambda key, shape, dtype: jax.random.uniform(key, shape, dtype, -bound, bound)


def adapter_delta(x2d, lora_a, lora_b, lora: LoraConfig, dtype, n_in: int, n_out: int, dropout):
  """(alpha / r) * dropout(x) A B for flattened tokens x2d [N, in]; `dropout` maps x2d -> x2d."""
  r = lora_a.shape[-1]
  a = jnp.asarray(lora_a, dtype).reshape(n_in, r)
  b = jnp.asarray(lora_b, dtype).reshape(r, n_out)
  return jnp.dot(jnp.dot(dropout(x2d), a), b) * jnp.asarray(lora.scale, dtype)


# --- param trees ----------------------------------------------------------------------------


def _path_str(path) -> str:
  return "/".join(getattr(k, "key", getattr(k, "name", str(k))) for k in path)


def linear_kernels(params) -> dict[str, tuple[int, ...]]:
  """path -> shape of every `Linear` kernel in a (possibly abstract, boxed) param tree."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(
      params, is_leaf=lambda x: isinstance(x, nn.meta.AxisMetadata)
  )[0]:
    p = _path_str(path)
    if p.endswith("/kernel"):
      out[p] = tuple(nn.unbox(leaf).shape)
  return out


def adapter_paths(params) -> list[tuple[str, ...]]:
  """Paths (tuples) of every lora_a/lora_b leaf of a param tree."""
  flat = jax.tree_util.tree_flatten_with_path(
      params, is_leaf=lambda x: isinstance(x, nn.meta.AxisMetadata)
  )[0]
  paths = [tuple(getattr(k, "key", str(k)) for k in path) for path, _ in flat]
  return [p for p in paths if p[-1] in ADAPTER_NAMES]


def check_lora(lora: LoraConfig, base_params, *, where: str = "train.lora") -> list[str]:
  """Kernel paths the adapters will sit on; a target matching no kernel, or a rank above a
  targeted matrix's smaller dimension, is a one-line error naming the value."""
  kernels = linear_kernels(base_params)
  layered = lambda p: p.startswith("layers/")  # noqa: E731  (scanned: leading layer axis)
  for pattern in lora.targets:
    if not any(re.search(pattern, p) for p in kernels):
      shown = ", ".join(sorted({re.sub(r"^layers_\d+/", "layers_N/", p) for p in kernels}))
      raise ValueError(
          f"config.{where}.targets: pattern {pattern!r} matches no linear kernel (kernels: {shown})"
      )
  chosen = [p for p in kernels if lora.targets_kernel(p)]
  for p in chosen:
    shape = kernels[p][1:] if layered(p) else kernels[p]
    n_in, n_out = _in_out(p, shape)
    if lora.rank > min(n_in, n_out):
      raise ValueError(
          f"config.{where}.rank={lora.rank} is larger than the {n_in}x{n_out} matrix {p}"
      )
  return chosen


def _in_out(path: str, shape) -> tuple[int, int]:
  # o_proj contracts [heads, head_dim]; every other kernel contracts its first axis.
  k = 2 if path.endswith("o_proj/kernel") else 1
  return int(np.prod(shape[:k])), int(np.prod(shape[k:]))


def merge_kernel(kernel, lora_a, lora_b, scale: float, xp=np):
  """kernel + scale * A B in float32, returned in the kernel's dtype: on the host (`xp=np`, the
  exports) or traced (`xp=jnp`, the generation engine's `llama.decode_weights`).

  Works on stacked ([layers, ...]) leaves as well: the leading axes are those that A, B and the
  kernel share (A is [..., in..., r], B [..., r, out...]).
  """
  if xp is np:
    kernel, lora_a, lora_b = (np.asarray(x) for x in (kernel, lora_a, lora_b))
  a, b = lora_a, lora_b
  lead = a.ndim + b.ndim - kernel.ndim - 2
  r = a.shape[-1]
  a2 = a.astype(xp.float32).reshape(a.shape[:lead] + (-1, r))
  b2 = b.astype(xp.float32).reshape(b.shape[:lead] + (r, -1))
  delta = xp.matmul(a2, b2).reshape(kernel.shape)
  return (kernel.astype(xp.float32) + xp.float32(scale) * delta).astype(kernel.dtype)


def init_adapters(model_cfg, rng, shardings):
  """Fresh adapters of `model_cfg` (which has `lora`) created in their shardings: a dict of
  path tuple -> array. Only the adapters are computed: the rest of the init is dead code to XLA."""
  from langshift.models.llama import init_params  # pylint: disable=import-outside-toplevel

  def get(tree, path):
    for k in path:
      tree = tree[k]
    return tree

  paths = adapter_paths(nn.unbox(jax.eval_shape(lambda r: init_params(model_cfg, r), rng)))

  def init(r):
    params = nn.unbox(init_params(model_cfg, r))
    return [get(params, p) for p in paths]

  leaves = jax.jit(init, out_shardings=[get(shardings, p) for p in paths])(rng)
  return dict(zip(paths, leaves))


def add_adapters(params: dict, adapters: dict) -> dict:
  """`params` (a nested dict of base weights) with the adapter leaves set at their paths."""
  for path, leaf in adapters.items():
    tree = params
    for k in path[:-1]:
      tree = tree.setdefault(k, {})
    tree[path[-1]] = leaf
  return params


def with_lora(model_cfg, section, *, where: str = "train.lora"):
  """`model_cfg` with the adapters of a config section (rank, alpha, dropout, targets,
  param_dtype), checked against the architecture's kernels (`check_lora`)."""
  from langshift.models.llama import abstract_params  # pylint: disable=import-outside-toplevel

  lora = LoraConfig(
      rank=int(section.rank),
      alpha=float(section.alpha),
      dropout=float(section.dropout),
      targets=resolve_targets(tuple(section.targets)),
      param_dtype=str(section.param_dtype),
  )
  check_lora(lora, abstract_params(model_cfg.replace(lora=None)), where=where)
  return model_cfg.replace(lora=lora)
