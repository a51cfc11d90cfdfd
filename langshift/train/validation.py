"""Every numeric and choice setting of an engine config, checked before anything loads.

`setup` calls `check_config` first, then `check_mesh` once the mesh exists and `check_model` once
the architecture is known (config.json read, no weights), so a bad value is a one-line error
naming the key, the value and what is allowed, before a model is loaded or a file is written.

`resume_differences` compares the config stored in a checkpoint with the current one: a change
of architecture, initialisation, data or optimizer makes the checkpoint's state (or its place in
the data) mean something else, so resuming is refused unless `resume_policy="new_config"`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax

from langshift import config_lib
from langshift.data import config as data_config_lib
from langshift.models.config import ATTENTION_IMPLS, REMAT_POLICIES
from langshift.train import config as train_config
from langshift.train.optimizer import SCHEDULES

RESUME_POLICIES = ("strict", "new_config")
DTYPES = ("float32", "bfloat16", "float16")
MU_DTYPES = ("", "float32", "bfloat16")

# Sections and keys whose change alters what a checkpoint's state means, or where in the data it
# stands; a change elsewhere (evaluations, logging, checkpointing, mesh) is safe to resume with.
RESUME_KEYS = (
    "init_from_hf",
    "tokenizer",
    "seed",
    "model",
    "data",
    "optimizer",
    "train.global_batch_size",
    "train.seq_len",
    "train.trainable",
    "train.lora",
    "train.z_loss",
)
# Inside those: speed and memory knobs that leave the state and the data order alone.
OPERATIONAL_KEYS = (
    "model.dtype",
    "model.remat_policy",
    "model.attention_impl",
    "data.read_threads",
    "data.prefetch_chunks",
    "data.prefetch_batches",
)


def _fail(key: str, value: Any, expected: str) -> None:
  raise ValueError(f"config.{key}={value!r}; expected {expected}")


def _integer(key: str, value: Any, low: int, high: int | None = None) -> None:
  if isinstance(value, bool) or not isinstance(value, int):
    _fail(key, value, "an integer")
  if value < low or (high is not None and value > high):
    _fail(key, value, f">= {low}" if high is None else f"in [{low}, {high}]")


def _number(key: str, value: Any, low: float, high: float, *, low_open=False, high_open=False):
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
    _fail(key, value, "a finite number")
  if value < low or value > high or (low_open and value == low) or (high_open and value == high):
    if high == math.inf:
      _fail(key, value, f"{'>' if low_open else '>='} {low:g}")
    _fail(key, value, f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}")


def _choice(key: str, value: Any, choices) -> None:
  if value not in choices:
    _fail(key, value, f"one of {tuple(choices)}")


def check_config(config) -> None:
  """The settings that need nothing but the config."""
  _choice("resume_policy", config.resume_policy, RESUME_POLICIES)
  tc, opt, ck = config.train, config.optimizer, config.checkpoint
  _integer("train.steps", tc.steps, 0)
  if tc.get("epochs", 0):
    raise ValueError(
        f"config.train.epochs={tc.epochs}: epochs are counted by a recipe's training stage over "
        "its chat file (langshift/recipes/training.py); the engine counts train.steps"
    )
  _integer("train.global_batch_size", tc.global_batch_size, 1)
  _integer("train.seq_len", tc.seq_len, 2)
  _integer("train.microbatches", tc.microbatches, 1)
  if tc.global_batch_size % tc.microbatches:
    raise ValueError(
        f"config.train.global_batch_size={tc.global_batch_size} is not divisible by "
        f"config.train.microbatches={tc.microbatches}"
    )
  _integer("train.log_every", tc.log_every, 0)
  _integer("train.loss_chunk_size", tc.loss_chunk_size, 0)
  if tc.loss_chunk_size and tc.seq_len % tc.loss_chunk_size:
    raise ValueError(
        f"config.train.loss_chunk_size={tc.loss_chunk_size} does not divide "
        f"config.train.seq_len={tc.seq_len}"
    )
  _number("train.z_loss", tc.z_loss, 0.0, math.inf)
  if tc.trainable == "lora":
    _integer("train.lora.rank", tc.lora.rank, 1)
    _number("train.lora.alpha", tc.lora.alpha, 0.0, math.inf, low_open=True)
    _number("train.lora.dropout", tc.lora.dropout, 0.0, 1.0, high_open=True)
    _choice("train.lora.param_dtype", tc.lora.param_dtype, DTYPES)
    if not tc.lora.targets:
      _fail("train.lora.targets", tc.lora.targets, "at least one preset or regex")

  if isinstance(opt.learning_rate, (int, float)) and opt.learning_rate == 0:
    raise ValueError(
        "config.optimizer.learning_rate=0 trains nothing; expected > 0 (to only evaluate a "
        "model, set config.train.steps=0)"
    )
  _number("optimizer.learning_rate", opt.learning_rate, 0.0, math.inf, low_open=True)
  _choice("optimizer.schedule", opt.schedule, SCHEDULES)
  _integer("optimizer.warmup_steps", opt.warmup_steps, 0)
  if opt.total_steps is not None:
    _integer("optimizer.total_steps", opt.total_steps, 1)
  _number("optimizer.final_lr_fraction", opt.final_lr_fraction, 0.0, 1.0)
  _number("optimizer.wsd_decay_fraction", opt.wsd_decay_fraction, 0.0, 1.0)
  _number("optimizer.b1", opt.b1, 0.0, 1.0, high_open=True)
  _number("optimizer.b2", opt.b2, 0.0, 1.0, high_open=True)
  _number("optimizer.eps", opt.eps, 0.0, math.inf, low_open=True)
  _number("optimizer.weight_decay", opt.weight_decay, 0.0, math.inf)
  _number("optimizer.grad_clip_norm", opt.grad_clip_norm, 0.0, math.inf)
  _choice("optimizer.mu_dtype", opt.mu_dtype, MU_DTYPES)

  _integer("checkpoint.every_steps", ck.every_steps, 1)
  _integer("checkpoint.keep", ck.keep, 1)
  _integer("checkpoint.export_hf_every", ck.export_hf_every, 0)
  _choice("checkpoint.export_dtype", ck.export_dtype, DTYPES)

  m = config.model
  _choice("model.dtype", m.dtype, DTYPES)
  _choice("model.param_dtype", m.param_dtype, DTYPES)
  _choice("model.remat_policy", m.remat_policy, REMAT_POLICIES)
  _choice("model.attention_impl", m.attention_impl, ATTENTION_IMPLS)
  for key in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads"):
    if m[key] is not None:
      _integer(f"model.{key}", m[key], 1)
  for key in ("num_kv_heads", "head_dim", "max_position_embeddings"):
    if m[key] is not None:
      _integer(f"model.{key}", m[key], 1)

  _integer("mesh.num_devices", config.mesh.num_devices, 0, jax.device_count())
  for part in ("ici", "dcn"):
    for axis, size in config.mesh[part].items():
      if size != -1:
        _integer(f"mesh.{part}.{axis}", size, 1)
  _number("perf.peak_flops_per_device", config.perf.peak_flops_per_device, 0.0, math.inf)
  check_data_numbers(config.data, "data")


def check_data_numbers(data, where: str) -> None:
  """The data section's sizes (its choices and sources: `langshift.data.config`)."""
  _integer(f"{where}.tokenize_batch_size", data.tokenize_batch_size, 1)
  _integer(f"{where}.mixture_block", data.mixture_block, 1)
  _integer(f"{where}.read_threads", data.read_threads, 0)
  _integer(f"{where}.prefetch_chunks", data.prefetch_chunks, 0)
  _integer(f"{where}.prefetch_batches", data.prefetch_batches, 0)


def check_data_config(config) -> None:
  """Sources and choices of `config.data` (when the run reads it rather than a given iterator)."""
  try:
    data_config_lib.validate_data_config(config.data)
  except ValueError as e:
    message = str(e)
    raise ValueError(message if message.startswith("data") else f"config.data: {message}") from None


def data_parallel_size(mesh) -> int:
  return int(mesh.shape["data"] * mesh.shape["fsdp"])


def check_mesh(config, mesh) -> None:
  """Batch sizes against the devices the batch is split over and the processes reading it."""
  tc, dp = config.train, data_parallel_size(mesh)
  if tc.global_batch_size % dp:
    raise ValueError(
        f"config.train.global_batch_size={tc.global_batch_size} is not divisible by the mesh's "
        f"data-parallel size {dp} (data x fsdp of {dict(mesh.shape)})"
    )
  if tc.global_batch_size % jax.process_count():
    raise ValueError(
        f"config.train.global_batch_size={tc.global_batch_size} is not divisible by the "
        f"{jax.process_count()} processes that read it"
    )


def check_model(config, model_config) -> None:
  """Sequence length against the positions the model was built (or trained) for."""
  if config.train.seq_len > model_config.max_position_embeddings:
    source = f"{config.init_from_hf}/config.json" if config.init_from_hf else "config.model"
    raise ValueError(
        f"config.train.seq_len={config.train.seq_len} exceeds the model's "
        f"max_position_embeddings={model_config.max_position_embeddings} ({source})"
    )


def resume_differences(stored: Mapping[str, Any], config) -> list[str]:
  """`key: old -> new` for each setting that differs between a checkpoint's config and `config`
  and changes what the checkpoint means. A key the checkpoint lacks but the schema has (added
  since it was written) is not a difference."""
  then, now = config_lib.flatten(dict(stored)), config_lib.flatten(config)
  compared = RESUME_KEYS
  # The schedule's length is optimizer.total_steps, or train.steps while that is unset.
  if then.get("optimizer.total_steps") is None and now.get("optimizer.total_steps") is None:
    compared += ("train.steps",)
  else:
    for flat in (then, now):
      flat["optimizer.total_steps"] = flat.get("optimizer.total_steps") or flat.get("train.steps")
  schema = set(config_lib.flatten(train_config.base_config()))
  missing = object()
  out = []
  for key in sorted(set(then) | set(now)):
    if not _under(key, compared) or _under(key, OPERATIONAL_KEYS):
      continue
    old, new = then.get(key, missing), now.get(key, missing)
    if old is missing and key in schema:
      continue
    if old != new:
      note = " (the schedule's length while optimizer.total_steps is unset)" * (
          key == "train.steps"
      )
      out.append(f"{key}: {_show(old, missing)} -> {_show(new, missing)}{note}")
  return out


def _under(key: str, prefixes) -> bool:
  return any(key == p or key.startswith(p + ".") for p in prefixes)


def _show(value, missing) -> str:
  return "(absent)" if value is missing else repr(value)
