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
