"""Load a local Hugging Face checkpoint directory into a sharded langshift param tree.

Shape first: the param tree comes from `llama.abstract_params` (`jax.eval_shape` of the init),
each leaf gets its NamedSharding from the logical rules, and `jax.make_array_from_callback` asks
for exactly the slices each local device owns. The callback reads those slices from memory-mapped
safetensors (one layer at a time), so neither the full model nor a full fp32 copy of it ever
exists on one host.

`on_host=True` returns numpy leaves instead: for host-side transforms of a whole checkpoint
(LEP's embedding surgery) that must not claim accelerator memory or take part in collectives.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from langshift.checkpoints import hf_config
from langshift.checkpoints.param_mapping import IGNORED_HF_SUFFIXES, our_path, tensor_mappings
from langshift.checkpoints.safetensors_io import CheckpointFormatError, SafetensorsCheckpoint
from langshift.models.config import ModelConfig
from langshift.models.llama import abstract_params
from langshift.parallel import sharding as sharding_lib


def param_shardings(cfg: ModelConfig, mesh=None, rules=None):
  """NamedShardings for every param (a single-device sharding when no mesh is given)."""
  boxed = abstract_params(cfg)
  if mesh is None:  # this process's first device (jax.devices()[0] is process 0's)
    single = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(lambda _: single, nn.unbox(boxed))
  return sharding_lib.logical_shardings(boxed, mesh, rules)


def load_hf_model(path: str, *, mesh=None, rules=None, on_host: bool = False, **model_overrides):
  """Reads `config.json` and the weights; returns (ModelConfig, params).

  `model_overrides` set the numerics that config.json does not decide: dtype, param_dtype,
  scan_layers, remat_policy, attention_impl. `on_host`: numpy leaves, no device placement.
  """
  cfg = hf_config.model_config_from_hf(
      hf_config.read_hf_config(path), source=f"{path}/config.json", **model_overrides
  )
  return cfg, load_hf_params(path, cfg, mesh=mesh, rules=rules, on_host=on_host)


def load_hf_params(path: str, cfg: ModelConfig, *, mesh=None, rules=None, on_host: bool = False):
  """Loads weights for an already-known config straight into their target shardings (or, with
  `on_host`, into numpy arrays)."""
  if on_host and mesh is not None:
    raise ValueError("load_hf_params: give a mesh or on_host=True, not both")
  ckpt = SafetensorsCheckpoint(path)
  shapes = nn.unbox(abstract_params(cfg))
  shardings = None if on_host else param_shardings(cfg, mesh, rules)
  dtype = np.dtype(jnp.dtype(cfg.param_dtype))
  mappings = tensor_mappings(cfg)

  expected_names = set()
  for m in mappings:
    layers = range(cfg.num_layers) if m.per_layer else [None]
    for layer in layers:
      name = m.hf_name.format(layer=layer)
      expected_names.add(name)
      if name not in ckpt:
        raise CheckpointFormatError(
            f"{path}: tensor {name!r} missing from the weights " f"(config.json needs it)"
        )
      if ckpt.shape(name) != m.hf_shape:
        raise CheckpointFormatError(
            f"{ckpt.file_of(name)}: tensor {name!r} has shape {ckpt.shape(name)} but config.json "
            f"implies {m.hf_shape}"
        )
  unexpected = [
      n
      for n in ckpt.keys()
      if n not in expected_names
      and not n.endswith(IGNORED_HF_SUFFIXES)
      and not (cfg.tie_word_embeddings and n == "lm_head.weight")
  ]
  if unexpected:
    logging.warning(
        "%s: %d tensors not used by the model, e.g. %s", path, len(unexpected), unexpected[0]
    )

  def place(path, read):
    shape = _get(shapes, path).shape
    if on_host:
      return read((slice(None),) * len(shape))
    return jax.make_array_from_callback(shape, _get(shardings, path), read)

  params: dict = {}
  for m in mappings:
    if m.per_layer and not cfg.scan_layers:
      for layer in range(cfg.num_layers):
        p = our_path(m, cfg, layer)
        read = functools.partial(_read_one, ckpt, m.hf_name.format(layer=layer), m.to_ours, dtype)
        _set(params, p, place(p, read))
    else:
      p = our_path(m, cfg)
      if m.per_layer:
        read = functools.partial(_read_stacked, ckpt, m.hf_name, m.to_ours, dtype, cfg.num_layers)
      else:
        read = functools.partial(_read_one, ckpt, m.hf_name, m.to_ours, dtype)
      _set(params, p, place(p, read))
  return params


def _read_one(ckpt, name, to_ours, dtype, index):
  return np.asarray(to_ours(ckpt.get(name))[index], dtype=dtype)


def _read_stacked(ckpt, name_pattern, to_ours, dtype, num_layers, index):
  """The slice `index` of a [layers, ...] leaf, reading only the layers it covers."""
  layer_index, rest = index[0], index[1:]
  rows = [
      np.asarray(to_ours(ckpt.get(name_pattern.format(layer=i)))[rest], dtype=dtype)
      for i in range(num_layers)[layer_index]
  ]
  return np.stack(rows)


def _get(tree, path):
  for k in path:
    tree = tree[k]
  return tree


def _set(tree, path, value):
  for k in path[:-1]:
    tree = tree.setdefault(k, {})
  tree[path[-1]] = value
