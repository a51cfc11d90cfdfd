"""Timing helpers of the train-step benchmark: the engine's own step on device-resident tokens.

Kept apart from the CLI (`langshift.bench.train_step`) so that tests and notebooks can import them
without defining command-line flags.
"""

from __future__ import annotations

import time

import flax.linen as nn
import jax
import numpy as np

from langshift import memory
from langshift.models.config import ModelConfig
from langshift.models.llama import LlamaDecoder, abstract_params
from langshift.parallel import sharding as sharding_lib
from langshift.parallel.mesh import create_mesh
from langshift.train import optimizer
from langshift.train import state as state_lib
from langshift.train import step as step_lib
from langshift.train.config import base_config

PRESETS = {
    # The shared dims of issue 7 (peers measured on the same CPU).
    "issue7": dict(
        vocab_size=32000,
        hidden_size=512,
        intermediate_size=1408,
        num_layers=8,
        num_heads=8,
        num_kv_heads=4,
    ),
    # ~1.1B Llama (TinyLlama-1.1B shapes) for GPU MFU.
    "1b": dict(
        vocab_size=32000,
        hidden_size=2048,
        intermediate_size=5632,
        num_layers=22,
        num_heads=32,
        num_kv_heads=4,
    ),
}


def peak_rss_mib() -> float:
  return memory.process_peak_bytes() / 2**20


def build_step(
    cfg: ModelConfig,
    batch: int,
    seq: int,
    trainable: str = "all",
    loss_chunk_size: int = 0,
    mesh=None,
):
  """(jitted step, state, batch on device) — the engine's own step function and shardings."""
  mesh = mesh or create_mesh({"data": 1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:1])
  rules = sharding_lib.DEFAULT_LOGICAL_RULES
  model = LlamaDecoder(cfg)
  opt = base_config().optimizer  # the engine's defaults; a constant LR for steady timing
  opt.update(schedule="constant", warmup_steps=0, total_steps=100, eps=1e-8)
  abstract = nn.unbox(abstract_params(cfg))
  tx, schedule = optimizer.make_optimizer(opt, abstract, trainable)
  mask = optimizer.trainable_mask(abstract, trainable)
  _, shardings = state_lib.state_shardings(model, tx, mesh, rules)
  state = state_lib.init_train_state(model, tx, mesh, rules, jax.random.PRNGKey(0), shardings)
  bs = sharding_lib.batch_sharding(mesh)
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, cfg.vocab_size, size=(batch, seq + 1), dtype=np.int32)
  host = {
      "inputs": tokens[:, :-1],
      "targets": tokens[:, 1:],
      "segment_ids": np.ones((batch, seq), np.int32),
      "positions": np.broadcast_to(np.arange(seq, dtype=np.int32), (batch, seq)),
      "loss_weights": np.ones((batch, seq), np.float32),
  }
  device_batch = {k: jax.device_put(v, bs) for k, v in host.items()}
  fn = step_lib.make_train_step(model, tx, schedule, mask, loss_chunk_size=loss_chunk_size)
  step = jax.jit(
      fn, in_shardings=(shardings, bs), out_shardings=(shardings, None), donate_argnums=(0,)
  )

  def run(s):
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
      return step(s, device_batch)

  def lower(s):
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
      return step.lower(s, device_batch)

  run.lower = lower  # for cost / memory analysis of exactly this step
  return run, state, host


def time_langshift(run, state, steps, warmup):
  state, m = run(state)  # compile
  jax.block_until_ready(m)
  for _ in range(warmup):
    state, m = run(state)
  jax.block_until_ready((state, m))
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    state, m = run(state)
    jax.block_until_ready((state, m))
    times.append(time.perf_counter() - t)
  return state, times


def torch_step_fn(cfg: ModelConfig, host):
  """transformers LlamaForCausalLM + torch AdamW on the same dims (the PyTorch peer)."""
  import torch
  import transformers

  torch.manual_seed(0)
  hf = transformers.LlamaConfig(
      vocab_size=cfg.vocab_size,
      hidden_size=cfg.hidden_size,
      intermediate_size=cfg.intermediate_size,
      num_hidden_layers=cfg.num_layers,
      num_attention_heads=cfg.num_heads,
      num_key_value_heads=cfg.num_kv_heads,
      max_position_embeddings=4096,
      tie_word_embeddings=False,
  )
  model = transformers.LlamaForCausalLM(hf).train()
  opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
  inputs = torch.as_tensor(host["inputs"], dtype=torch.long)
  labels = torch.as_tensor(host["targets"], dtype=torch.long)

  def step():
    opt.zero_grad(set_to_none=True)
    logits = model(inputs).logits
    loss = torch.nn.functional.cross_entropy(
        logits.view(-1, logits.shape[-1]).float(), labels.view(-1)
    )
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return float(loss)

  return step
