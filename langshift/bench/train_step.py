"""Times the real langshift train step (the function training uses) on random tokens.

  python -m langshift.bench.train_step                      # issue-7 dims, fp32, CPU
  python -m langshift.bench.train_step --compare_torch      # + transformers/torch, A B A B
  python -m langshift.bench.train_step --preset=1b --dtype=bfloat16 --attention=cudnn   # GPU

No data loading, checkpointing or logging inside the timed loop; tokens are already on device.
Prints the machine's measured matmul peak, then one final line
`tokens_per_s=… mfu=… step_s=… peak_rss_mib=…`. MFU uses the convention in
`langshift/train/flops.py` (6·N per token plus causal attention at half) against the measured
peak for the step's dtype (or the vendor table on GPU/TPU).
"""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from langshift.bench.step_timing import (
    PRESETS,
    build_step,
    peak_rss_mib,
    time_langshift,
    torch_step_fn,
)
from langshift.models.config import ModelConfig
from langshift.train import flops

_PRESET = flags.DEFINE_enum("preset", "issue7", list(PRESETS), "Model dims.")
_SEQ = flags.DEFINE_integer("seq_len", 512, "Tokens per row.")
_BATCH = flags.DEFINE_integer("batch", 4, "Rows per step.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype.")
_PARAM_DTYPE = flags.DEFINE_enum(
    "param_dtype", "float32", ["float32", "bfloat16"], "Master-weight dtype."
)
_REMAT = flags.DEFINE_enum("remat", "none", ["none", "minimal", "full"], "Remat policy.")
_SCAN = flags.DEFINE_boolean("scan_layers", True, "nn.scan over layers (False: unrolled).")
_ATTN = flags.DEFINE_enum("attention", "xla", ["xla", "cudnn", "splash"], "Attention impl.")
_CHUNK = flags.DEFINE_integer("loss_chunk_size", 0, "Chunked cross-entropy (0: off).")
_TRAINABLE = flags.DEFINE_string("trainable", "all", "Trainable preset.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps (median reported).")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps after compilation.")
_TORCH = flags.DEFINE_boolean("compare_torch", False, "Also time transformers + torch AdamW.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "A B rounds for --compare_torch.")


def main(argv):
  del argv
  cfg = ModelConfig(
      **PRESETS[_PRESET.value],
      dtype=_DTYPE.value,
      param_dtype=_PARAM_DTYPE.value,
      remat_policy=_REMAT.value,
      scan_layers=_SCAN.value,
      attention_impl=_ATTN.value,
      max_position_embeddings=max(4096, _SEQ.value),
  )
  backend = jax.default_backend()
  print(f"device: {jax.devices()[0].device_kind} ({backend}), jax {jax.__version__}")
  peak32 = flops.measure_matmul_peak(jnp.float32)
  peak16 = flops.measure_matmul_peak(jnp.bfloat16)
  print(f"measured matmul peak: fp32 {peak32 / 1e9:.1f} GFLOP/s, bf16 {peak16 / 1e9:.1f} GFLOP/s")
  table = flops.device_peak_flops() if backend != "cpu" else 0.0
  peak = table or (peak16 if _DTYPE.value == "bfloat16" else peak32)
  run, state, host = build_step(cfg, _BATCH.value, _SEQ.value, _TRAINABLE.value, _CHUNK.value)
  tokens = _BATCH.value * _SEQ.value
  fpt = flops.train_flops_per_token(cfg, _SEQ.value)
  print(f"model: {cfg.num_params() / 1e6:.1f}M params, {fpt / 1e9:.3f} GFLOP/token (train)")

  if not _TORCH.value:
    state, times = time_langshift(run, state, _STEPS.value, _WARMUP.value)
  else:
    import torch

    torch_step = torch_step_fn(cfg, host)
    for _ in range(_WARMUP.value):
      torch_step()
    state, _ = time_langshift(run, state, 1, _WARMUP.value)
    times, torch_times = [], []
    for r in range(_ROUNDS.value):  # A B A B: both see the same machine state
      state, t = time_langshift(run, state, _STEPS.value, 0)
      times += t
      tt = []
      for _ in range(_STEPS.value):
        s = time.perf_counter()
        torch_step()
        tt.append(time.perf_counter() - s)
      torch_times += tt
      print(f"round {r}: langshift {statistics.median(t):.3f}s  torch {statistics.median(tt):.3f}s")
    torch_s = statistics.median(torch_times)
    print(f"torch {torch.__version__}: step_s={torch_s:.3f} tokens_per_s={tokens / torch_s:.1f}")
    print(f"ratio langshift/torch tokens_per_s = {torch_s / statistics.median(times):.3f}")
  step_s = statistics.median(times)
  tps = tokens / step_s
  mfu = tps * fpt / (peak * jax.device_count() if table else peak)
  print(
      f"tokens_per_s={tps:.1f} mfu={mfu:.4f} step_s={step_s:.4f} "
      f"peak_rss_mib={peak_rss_mib():.0f}"
  )


if __name__ == "__main__":
  app.run(main)
