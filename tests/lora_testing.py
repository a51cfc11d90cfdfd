"""Adapted tiny models for tests: a Hugging Face base checkpoint plus random non-zero LoRA
adapters, and langshift's logits of them."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from langshift.checkpoints import hf_import
from langshift.models import lora as lora_lib
from langshift.models.llama import LlamaDecoder


def lora_section(**kw):
  c = dict(rank=4, alpha=8.0, dropout=0.1, targets=("attention", "mlp"), param_dtype="float32")
  c.update(kw)
  return ml_collections.ConfigDict(c)


def adapted(src, section, seed=0, scan_layers=True):
  """(cfg with lora, params): the HF base weights plus random (non-zero) adapters."""
  base_cfg = hf_import.load_hf_model(str(src), scan_layers=scan_layers)[0]
  cfg = lora_lib.with_lora(base_cfg, section)
  params = hf_import.load_hf_params(str(src), cfg, on_host=True)
  adapters = lora_lib.init_adapters(cfg, jax.random.PRNGKey(seed), hf_import.param_shardings(cfg))
  rng = np.random.default_rng(seed)
  adapters = {
      p: np.asarray(a) if p[-1] == "lora_a" else rng.normal(0, 0.1, a.shape).astype(np.float32)
      for p, a in adapters.items()
  }
  return cfg, lora_lib.add_adapters(params, adapters)


def our_logits(cfg, params, tokens):
  return np.asarray(LlamaDecoder(cfg).apply({"params": params}, jnp.asarray(tokens)))
