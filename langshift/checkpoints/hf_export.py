"""Export a langshift param tree as a Hugging Face directory that transformers and vLLM load.

Writes sharded safetensors (+ index), `config.json`, `generation_config.json` and the tokenizer
files. Parameters are gathered one leaf at a time, so host memory holds one tensor, not the model.
Only process 0 writes. With params sharded across processes every process must call this
(gathering is collective); host (numpy) params need only process 0 (LEP's stages).
"""

from __future__ import annotations

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np

from langshift.checkpoints import hf_config
from langshift.checkpoints.param_mapping import our_path, tensor_mappings
from langshift.checkpoints.safetensors_io import write_sharded_safetensors
from langshift.models import lora as lora_lib
from langshift.models.config import ModelConfig
from langshift.parallel.host_transfer import to_host
from langshift.tokenization.tokenizer_files import write_chat_template

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
)


def export_hf_model(
    params,
    cfg: ModelConfig,
    out_dir: str,
    *,
    tokenizer_dir: str | None = None,
    dtype: str | None = "bfloat16",
    max_shard_bytes: int = 5 * 2**30,
    generation_config: dict | None = None,
    chat_template: str | None = None,
) -> str:
  """Writes `out_dir`; `dtype=None` keeps the param dtype (bit-exact round trips).

  `chat_template` (jinja), when given, is the export's default chat template in place of the
  one of `tokenizer_dir` (the run's `data.chat_template`; see `copy_tokenizer_files`).

  Low-rank adapters (`cfg.lora`) are merged into their kernels (W + alpha/r * A B, in float32
  on the host, one leaf at a time): the export is a plain model. `export_peft_adapter` writes the
  adapters alone.
  """
  out_dtype = None if dtype is None else np.dtype(jnp.dtype(dtype))
  scale = cfg.lora.scale if cfg.lora is not None else None
  cfg = cfg.replace(lora=None)
  is_writer = jax.process_index() == 0
  if is_writer:
    os.makedirs(out_dir, exist_ok=True)

  def hf_tensors():
    for m in tensor_mappings(cfg):
      if not m.per_layer:
        yield m.hf_name, _convert(_fetch_merged(params, m.path, scale), m.to_hf, out_dtype)
        continue
      if cfg.scan_layers:
        stacked = _fetch_merged(params, our_path(m, cfg), scale)
        for layer in range(cfg.num_layers):
          yield m.hf_name.format(layer=layer), _convert(stacked[layer], m.to_hf, out_dtype)
      else:
        for layer in range(cfg.num_layers):
          leaf = _fetch_merged(params, our_path(m, cfg, layer), scale)
          yield m.hf_name.format(layer=layer), _convert(leaf, m.to_hf, out_dtype)

  tensors = hf_tensors()
  if is_writer:
    write_sharded_safetensors(out_dir, tensors, max_shard_bytes=max_shard_bytes)
  else:
    for _ in tensors:  # Take part in the collective gathers.
      pass
  if not is_writer:
    return out_dir

  saved_dtype = np.dtype(out_dtype or _leaf_dtype(params)).name
  with open(os.path.join(out_dir, "config.json"), "w") as f:
    json.dump(hf_config.model_config_to_hf(cfg, torch_dtype=saved_dtype), f, indent=2)
  gen = _generation_config(cfg, tokenizer_dir, generation_config)
  with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
    json.dump(gen, f, indent=2)
  if tokenizer_dir:
    copy_tokenizer_files(tokenizer_dir, out_dir, chat_template=chat_template)
  return out_dir


# Named chat templates besides the default one (transformers writes one .jinja file each).
CHAT_TEMPLATES_DIR = "additional_chat_templates"


def copy_tokenizer_files(src: str, dst: str, *, chat_template: str | None = None) -> list[str]:
  """Copies the tokenizer files of `src` that exist into `dst`; returns their names.

  `chat_template` (jinja) then becomes `dst`'s default template (`chat_template.jinja`), the one
  `transformers`' `apply_chat_template` renders: a run trained with its own `data.chat_template`
  (a base model's tokenizer has none) ships the template it was trained in.
  """
  if os.path.abspath(src) == os.path.abspath(dst):
    if chat_template is not None:
      write_chat_template(dst, chat_template)
    return []
  copied = []
  for name in TOKENIZER_FILES:
    path = os.path.join(src, name)
    if os.path.exists(path):
      shutil.copyfile(path, os.path.join(dst, name))
      copied.append(name)
  if os.path.isdir(os.path.join(src, CHAT_TEMPLATES_DIR)):
    shutil.copytree(
        os.path.join(src, CHAT_TEMPLATES_DIR),
        os.path.join(dst, CHAT_TEMPLATES_DIR),
        dirs_exist_ok=True,
    )
    copied.append(CHAT_TEMPLATES_DIR)
  if chat_template is not None:
    write_chat_template(dst, chat_template)
  return copied


def _generation_config(cfg, tokenizer_dir, override):
  gen = {}
  src = os.path.join(tokenizer_dir, "generation_config.json") if tokenizer_dir else None
  if src and os.path.exists(src):
    with open(src) as f:
      gen = json.load(f)
  gen.setdefault("bos_token_id", cfg.bos_token_id)
  eos = cfg.eos_token_id
  gen.setdefault("eos_token_id", list(eos) if isinstance(eos, tuple) else eos)
  if cfg.pad_token_id is not None:
    gen.setdefault("pad_token_id", cfg.pad_token_id)
  gen.update(override or {})
  return gen


def _fetch(params, path):
  leaf = params
  for k in path:
    leaf = leaf[k]
  return to_host(leaf)


def _fetch_merged(params, path, scale):
  """The leaf at `path`, with its adapters merged in when the kernel has them."""
  leaf = _fetch(params, path)
  parent = params
  for k in path[:-1]:
    parent = parent[k]
  if scale is None or path[-1] != "kernel" or "lora_a" not in parent:
    return leaf
  a, b = to_host(parent["lora_a"]), to_host(parent["lora_b"])
  return lora_lib.merge_kernel(leaf, a, b, scale)


def _convert(x, to_hf, out_dtype):
  x = to_hf(x)
  return np.ascontiguousarray(x if out_dtype is None else x.astype(out_dtype))


def _leaf_dtype(params):
  return jax.tree.leaves(params)[0].dtype
