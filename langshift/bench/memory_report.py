"""Per-device memory of the compiled train step, from abstract shapes (nothing is allocated).

  python -m langshift.bench.memory_report --model=llama3_8b --devices=1 --trainable=embeddings
  python -m langshift.bench.memory_report --model=llama3_8b --devices=16 --fsdp=16 \
      --trainable=all --param_dtype=bfloat16
  python -m langshift.bench.memory_report --model=llama3_8b --devices=1 --trainable=lora \
      --lora_rank=8 --param_dtype=bfloat16

The step is lowered on `jax.ShapeDtypeStruct`s carrying the real shardings and compiled for
simulated CPU devices (`--devices` sets `--xla_force_host_platform_device_count` before jax is
imported); `compiled.memory_analysis()` then reports argument, output, temporary and aliased bytes
per device. CPU fusion differs from GPU/TPU fusion, so temporaries are an estimate; parameters and
optimizer state are exact.
"""

from __future__ import annotations

import os
import sys


def _set_devices_from_argv():
  for a in sys.argv:
    if a.startswith("--devices="):
      n = int(a.split("=", 1)[1])
      os.environ["XLA_FLAGS"] = (
          os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={n}"
      )
      os.environ.setdefault("JAX_PLATFORMS", "cpu")


_set_devices_from_argv()

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from absl import app, flags  # noqa: E402

from langshift.aot.models import PRESETS  # noqa: E402
from langshift.models import lora as lora_lib  # noqa: E402
from langshift.models.config import ModelConfig  # noqa: E402
from langshift.models.llama import LlamaDecoder, abstract_params  # noqa: E402
from langshift.parallel import sharding as sharding_lib  # noqa: E402
from langshift.parallel.mesh import create_mesh  # noqa: E402
from langshift.train import optimizer  # noqa: E402
from langshift.train import state as state_lib  # noqa: E402
from langshift.train import step as step_lib  # noqa: E402
from langshift.train.config import base_config  # noqa: E402

# The published models' shapes: one table, shared with the ahead-of-time compiler.
MODELS = PRESETS

_MODEL = flags.DEFINE_enum("model", "llama3_8b", list(MODELS), "Architecture.")
_DEVICES = flags.DEFINE_integer("devices", 1, "Simulated devices in the mesh.")
_DATA = flags.DEFINE_integer("data", 1, "Mesh data axis.")
_FSDP = flags.DEFINE_integer("fsdp", -1, "Mesh fsdp axis (-1: the rest).")
_TENSOR = flags.DEFINE_integer("tensor", 1, "Mesh tensor axis.")
_TRAINABLE = flags.DEFINE_string("trainable", "all", "Trainable preset (all, embeddings, lora).")
_LORA_RANK = flags.DEFINE_integer("lora_rank", 8, "LoRA rank (--trainable=lora).")
_LORA_TARGETS = flags.DEFINE_list("lora_targets", ["attention", "mlp"], "LoRA targets.")
_PARAM_DTYPE = flags.DEFINE_string("param_dtype", "float32", "Master-weight dtype.")
_MU_DTYPE = flags.DEFINE_string("mu_dtype", "", "Adam first-moment dtype ('' = param dtype).")
_BATCH = flags.DEFINE_integer("batch", 8, "Global rows per step.")
_MICRO = flags.DEFINE_integer("microbatches", 1, "Gradient-accumulation microbatches.")
_SEQ = flags.DEFINE_integer("seq_len", 1024, "Tokens per row.")
_REMAT = flags.DEFINE_string("remat", "full", "Remat policy.")
_CHUNK = flags.DEFINE_integer("loss_chunk_size", 256, "Chunked cross-entropy (0: off).")


def main(argv):
  del argv
  cfg = ModelConfig(
      **MODELS[_MODEL.value],
      dtype="bfloat16",
      param_dtype=_PARAM_DTYPE.value,
      remat_policy=_REMAT.value,
  )
  train = base_config().train
  train.trainable = _TRAINABLE.value
  train.lora.update(rank=_LORA_RANK.value, targets=tuple(_LORA_TARGETS.value))
  if _TRAINABLE.value == "lora":  # adapters in fp32 on the frozen base (train.lora.param_dtype)
    cfg = lora_lib.with_lora(cfg, train.lora)
  trainable = optimizer.trainable_spec(train)
  mesh = create_mesh({"data": _DATA.value, "fsdp": _FSDP.value, "tensor": _TENSOR.value})
  rules = sharding_lib.DEFAULT_LOGICAL_RULES
  model = LlamaDecoder(cfg)
  opt = base_config().optimizer  # the engine's defaults, as an experiment would start from
  opt.update(total_steps=1000, mu_dtype=_MU_DTYPE.value)
  abstract = nn.unbox(abstract_params(cfg))
  tx, schedule = optimizer.make_optimizer(opt, abstract, trainable)
  mask = optimizer.trainable_mask(abstract, trainable)
  abstract_state, shardings = state_lib.state_shardings(model, tx, mesh, rules)
  bs = sharding_lib.batch_sharding(mesh)
  b, t = _BATCH.value, _SEQ.value
  batch = {
      k: jax.ShapeDtypeStruct(
          (b, t), jnp.float32 if k == "loss_weights" else jnp.int32, sharding=bs
      )
      for k in step_lib.BATCH_KEYS
  }
  state_in = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_state, shardings
  )
  fn = step_lib.make_train_step(
      model, tx, schedule, mask, microbatches=_MICRO.value, loss_chunk_size=_CHUNK.value
  )
  step = jax.jit(
      fn, in_shardings=(shardings, bs), out_shardings=(shardings, None), donate_argnums=(0,)
  )
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    compiled = step.lower(state_in, batch).compile()
  mem = compiled.memory_analysis()
  gib = 2.0**30
  n_params = sum(x.size for x in jax.tree.leaves(abstract_state.params))
  n_opt = sum(x.size for x in jax.tree.leaves(abstract_state.opt_state) if x.ndim)
  opt_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(abstract_state.opt_state))
  n_trainable = sum(
      x.size for x, m in zip(jax.tree.leaves(abstract_state.params), jax.tree.leaves(mask)) if m
  )
  args, out = mem.argument_size_in_bytes, mem.output_size_in_bytes
  alias, temp = mem.alias_size_in_bytes, mem.temp_size_in_bytes
  peak = args + out - alias + temp
  print(
      f"{_MODEL.value}: {n_params / 1e9:.2f}B params ({_PARAM_DTYPE.value}), trainable "
      f"{n_trainable / 1e6:.1f}M, optimizer-state elements {n_opt / 1e9:.3f}B "
      f"({opt_bytes / gib:.3f} GiB), trainable={_TRAINABLE.value}"
      f"{f' r={_LORA_RANK.value}' if cfg.lora else ''}, mesh {dict(mesh.shape)}, "
      f"batch {b}x{t} in {_MICRO.value} microbatch(es), remat={_REMAT.value}"
  )
  print(
      f"per device: arguments {args / gib:.2f} GiB, outputs {out / gib:.2f} GiB (aliased "
      f"{alias / gib:.2f}), temporaries {temp / gib:.2f} GiB -> peak ~{peak / gib:.2f} GiB"
  )


if __name__ == "__main__":
  app.run(main)
