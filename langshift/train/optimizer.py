"""AdamW with schedules, and parameter freezing by regex over parameter paths.

Frozen parameters go through `optax.set_to_zero` inside `optax.multi_transform`, so they hold no
optimizer state at all: embedding-only LEP training of an 8B model keeps Adam moments for the
embeddings alone, which is what lets it fit on one accelerator.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import flax.linen as nn
import jax
import optax

# Parameter paths are "/"-joined module names, e.g. "layers/self_attn/q_proj/kernel".
TRAINABLE_PRESETS = {
    "all": (".*",),
    # LEP step 2: input embeddings and the output projection (the same matrix when tied).
    "embeddings": (r"^embed_tokens/", r"^lm_head/"),
    # Low-rank adapters only (train.lora; langshift/models/lora.py): the base weights are frozen.
    "lora": (r"/lora_[ab]$",),
}
SCHEDULES = ("cosine", "wsd", "constant")


def param_path(path) -> str:
  return "/".join(getattr(k, "key", getattr(k, "name", str(k))) for k in path)


def path_mask(params, patterns: Sequence[str]):
  """Bool tree: True where the parameter path matches any pattern (re.search)."""
  compiled = [re.compile(p) for p in patterns]
  # Boxed (logically partitioned) params count as leaves, so paths end at the param name.
  return jax.tree_util.tree_map_with_path(
      lambda path, _: any(c.search(param_path(path)) for c in compiled),
      params,
      is_leaf=lambda x: isinstance(x, nn.meta.AxisMetadata),
  )


def trainable_spec(train) -> str | tuple[str, ...]:
  """What `train.trainable` selects: "lora" with `train.lora.train_embeddings` adds the
  embeddings (trained in full, like PEFT's `modules_to_save`) to the adapters."""
  if train.trainable == "lora" and train.lora.train_embeddings:
    return TRAINABLE_PRESETS["lora"] + TRAINABLE_PRESETS["embeddings"]
  return train.trainable


def trainable_mask(params, trainable: str | Sequence[str]):
  """`trainable` is a preset name or a list of regexes; an empty selection is an error."""
  if isinstance(trainable, str):
    if trainable not in TRAINABLE_PRESETS:
      raise ValueError(
          f"train.trainable={trainable!r}: not a preset "
          f"({', '.join(TRAINABLE_PRESETS)}); give a list of regexes instead"
      )
    patterns = TRAINABLE_PRESETS[trainable]
  else:
    patterns = tuple(trainable)
  mask = path_mask(params, patterns)
  if not any(jax.tree.leaves(mask)):
    raise ValueError(f"train.trainable={trainable!r} matches no parameter")
  return mask


def learning_rate_schedule(opt) -> optax.Schedule:
  """Warm-up then cosine / WSD (warmup-stable-decay) / constant, from the optimizer config."""
  peak, warmup, total = opt.learning_rate, opt.warmup_steps, opt.total_steps
  end = peak * opt.final_lr_fraction
  if opt.schedule not in SCHEDULES:
    raise ValueError(f"optimizer.schedule={opt.schedule!r}; expected one of {SCHEDULES}")
  warm = optax.linear_schedule(0.0, peak, max(warmup, 1))
  if opt.schedule == "constant":
    after = optax.constant_schedule(peak)
  elif opt.schedule == "cosine":
    after = optax.cosine_decay_schedule(
        peak, max(total - warmup, 1), alpha=end / peak if peak else 0
    )
  else:  # WSD: hold the peak, then decay linearly over the last `wsd_decay_fraction` of steps.
    decay = max(int(round(total * opt.wsd_decay_fraction)), 1)
    stable = max(total - warmup - decay, 0)
    after = optax.join_schedules(
        [optax.constant_schedule(peak), optax.linear_schedule(peak, end, decay)], [stable]
    )
  return optax.join_schedules([warm, after], [warmup]) if warmup > 0 else after


def make_optimizer(opt, params, trainable) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Global-norm clipping + AdamW on trainable params; frozen ones get `set_to_zero`."""
  schedule = learning_rate_schedule(opt)
  # A callable mask: inside multi_transform the tree has MaskedNode holes where params are frozen.
  no_decay = tuple(opt.no_decay_patterns)
  decay_mask = lambda tree: jax.tree.map(lambda m: not m, path_mask(tree, no_decay))  # noqa: E731
  adamw = optax.chain(
      optax.clip_by_global_norm(opt.grad_clip_norm) if opt.grad_clip_norm else optax.identity(),
      optax.adamw(
          schedule,
          b1=opt.b1,
          b2=opt.b2,
          eps=opt.eps,
          weight_decay=opt.weight_decay,
          mask=decay_mask,
          mu_dtype=opt.mu_dtype or None,
      ),
  )
  labels = jax.tree.map(lambda m: "train" if m else "freeze", trainable_mask(params, trainable))
  tx = optax.multi_transform({"train": adamw, "freeze": optax.set_to_zero()}, labels)
  return tx, schedule
