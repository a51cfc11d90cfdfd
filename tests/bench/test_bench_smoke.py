"""The benchmark scripts keep working (tiny dims; no timing is asserted)."""

import jax
import numpy as np

from langshift.bench.step_timing import build_step, time_langshift
from langshift.models.config import ModelConfig


def test_train_step_benchmark_runs_the_engine_step():
  cfg = ModelConfig(
      vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2
  )
  run, state, host = build_step(cfg, batch=2, seq=256)  # 256: the blocked attention path
  assert host["inputs"].shape == (2, 256)
  state, times = time_langshift(run, state, steps=2, warmup=1)
  assert len(times) == 2 and int(state.step) == 4  # compile call + 1 warm-up + 2 timed
  state, metrics = run(state)  # the old state was donated
  assert np.isfinite(float(metrics["train/loss"])) and not bool(metrics["train/nonfinite"])
  cost = run.lower(state).compile().cost_analysis()
  assert cost  # the step lowers for cost/memory analysis
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params))


def test_cpu_gemm_benchmark_times_every_shape(capsys):
  from langshift.bench import cpu_gemm

  assert [s[0] for s in cpu_gemm.shapes(8, 16, 32, prefill_tokens=12, decode_rows=2)] == [
      "prefill q/o projection",
      "prefill MLP up",
      "prefill MLP down",
      "decode q/o projection",
      "decode MLP up",
      "decode MLP down",
      "decode lm_head",
  ]
  cpu_gemm.main(
      ["--hidden=8", "--mlp=16", "--vocab=32", "--prefill_tokens=12", "--decode_rows=2"]
      + ["--repeats=1", "--threads=1"]
  )
  rows = [line for line in capsys.readouterr().out.splitlines() if "torch/XLA time" in line]
  assert len(rows) == 7 and "2 x 8 x 32" in rows[-1]
