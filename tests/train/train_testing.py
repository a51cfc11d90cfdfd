"""A tiny model config and a deterministic, checkpointable synthetic batch stream."""

from __future__ import annotations

import os
import signal

import numpy as np

from langshift.train.config import base_config


class SyntheticBatches:
  """Rows following next = (3 * prev + 1) % vocab from a random start, two packed segments."""

  def __init__(self, batch_size, seq_len, vocab, seed=0, sigterm_at=None):
    self.batch_size, self.seq_len, self.vocab, self.seed = batch_size, seq_len, vocab, seed
    self.index = 0
    self.sigterm_at = sigterm_at

  def __iter__(self):
    return self

  def __next__(self):
    if self.sigterm_at is not None and self.index == self.sigterm_at:
      os.kill(os.getpid(), signal.SIGTERM)  # a preemption notice arriving mid-run
    rng = np.random.default_rng((self.seed, self.index))
    self.index += 1
    b, t = self.batch_size, self.seq_len
    seq = np.zeros((b, t + 1), np.int64)
    seq[:, 0] = rng.integers(0, self.vocab, size=b)
    for i in range(1, t + 1):
      seq[:, i] = (3 * seq[:, i - 1] + 1) % self.vocab
    half = t // 2
    seg = np.concatenate([np.ones((b, half)), 2 * np.ones((b, t - half))], axis=1).astype(np.int32)
    pos = np.concatenate([np.arange(half), np.arange(t - half)])[None].repeat(b, 0)
    weights = np.ones((b, t), np.float32)
    weights[:, half - 1] = 0  # last token of a segment predicts nothing
    weights[:, -1] = 0
    return {
        "inputs": seq[:, :-1].astype(np.int32),
        "targets": seq[:, 1:].astype(np.int32),
        "segment_ids": seg,
        "positions": pos.astype(np.int32),
        "loss_weights": weights,
    }

  def get_state(self):
    return {"index": self.index}

  def set_state(self, state):
    self.index = int(state["index"])


def tiny_config(**train):
  c = base_config()
  c.model.update(
      vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2
  )
  c.train.update(steps=8, global_batch_size=8, seq_len=16, log_every=1)
  c.train.update(**train)
  c.optimizer.update(learning_rate=3e-3, warmup_steps=2)
  c.checkpoint.update(every_steps=4, keep=2, async_save=False, export_hf_at_end=False)
  c.mesh.num_devices = 1
  c.mesh.ici.fsdp = 1
  c.perf.peak_flops_per_device = 1e12
  return c


def read_metrics(workdir):
  import json

  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]
