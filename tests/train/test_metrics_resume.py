"""metrics.jsonl holds each step once after kills and resumes (re-run steps replace, a torn
last line is cut), and throughput windows count training only (not the evaluations)."""

import json
import os
import signal
import subprocess
import sys
import textwrap

from train_testing import SyntheticBatches, tiny_config

from langshift.evaluation.evaluators import Evaluator
from langshift.train import progress
from langshift.train.trainer import train_and_evaluate

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


class Probe(Evaluator):
  """An evaluation at the start and every `every_steps` that `tick`s the clock by `seconds`."""

  def __init__(self, every_steps, tick=lambda: None):
    self.name, self.every_steps, self.at_start, self.metric = "probe", every_steps, True, ""
    self.tick = tick

  def __call__(self, params, step=None):
    self.tick()
    return {"eval_test/probe": 1.0}


def _config(steps):
  config = tiny_config(steps=steps)
  config.optimizer.total_steps = 8
  return config


# The run below in a process of its own, SIGKILLed after step 6 (checkpoints at 4 and 8).
_CHILD = textwrap.dedent("""
    import sys
    sys.path[:0] = [sys.argv[2], sys.argv[3]]
    from train_testing import SyntheticBatches
    from test_metrics_resume import Probe, _config
    from langshift.train.trainer import train_and_evaluate
    train_and_evaluate(_config(8), sys.argv[1], train_iter=SyntheticBatches(8, 16, 64),
                       evaluators=[Probe(every_steps=4)])
""")


def _rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]  # every line whole


def test_each_step_is_recorded_once_after_a_kill_a_torn_line_and_a_resume(tmp_path):
  workdir = str(tmp_path / "run")
  here = os.path.dirname(__file__)
  child = subprocess.run(
      [sys.executable, "-c", _CHILD, workdir, here, os.path.join(here, "..")],
      env={**os.environ, "PYTHONPATH": REPO, "LANGSHIFT_FAULT": "kill@step=6"},
      capture_output=True,
      timeout=600,
  )
  assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
  with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
    f.write('{"step": 6, "train/lo')  # a write cut by the kill
  summary = train_and_evaluate(
      _config(8), workdir, train_iter=SyntheticBatches(8, 16, 64), evaluators=[Probe(every_steps=4)]
  )
  assert summary["start_step"] == 4
  rows = _rows(workdir)
  train = [r["step"] for r in rows if "train/loss" in r]
  probes = [r["step"] for r in rows if "eval_test/probe" in r]
  assert train == list(range(1, 9))
  assert probes == [0, 4, 8]  # the resumed run's evaluation at step 4 replaced the first one


def test_evaluations_do_not_count_as_training_time(tmp_path, monkeypatch):
  offset = [0.0]
  monkeypatch.setattr(progress, "_now", lambda: progress.time.perf_counter() + offset[0])

  def tick():  # each evaluation "takes" 1000 s
    offset[0] += 1000.0

  config = _config(4)
  config.checkpoint.every_steps = 100
  train_and_evaluate(
      config,
      str(tmp_path),
      train_iter=SyntheticBatches(8, 16, 64),
      evaluators=[Probe(every_steps=2, tick=tick)],
  )
  times = {r["step"]: r["perf/step_time_s"] for r in _rows(tmp_path) if "perf/step_time_s" in r}
  assert sorted(times) == [1, 2, 3, 4]
  # The evaluations before step 1 and after step 2 would add 1000 s to steps 1 and 3.
  assert all(t < 500 for t in times.values()), times
