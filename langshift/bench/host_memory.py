"""Peak host memory (RSS) of an experiment variant, per stage and per phase, against the 10 GiB
line of a free Colab runtime (about 12.7 GB of RAM, the notebook kernel needing the rest).

  python -m langshift.bench.host_memory --config=experiments/demo.py --workdir=/tmp/hm/demo
  python -m langshift.bench.host_memory --config=experiments/noninstruct.py:cpu,tuning=full \\
      --workdir=/tmp/hm/noninstruct --out=/tmp/hm/noninstruct.json

It runs the variant in this process exactly as `langshift.main` does (`run_experiment`) and
prints the phases `langshift.memory` recorded, in the order they ended: each recipe stage (its
summary also carries `peak_rss_gib`), and inside a training run model load, compile (the first
step), training, each evaluation and the export. Per phase: the peak RSS reached in it, the RSS
when it began and ended (what it left resident) and its wall time. The phases whose peak rose
most above their starting RSS are listed as the largest contributors. `--baseline` runs the same
code without the release at each stage's end (`memory.release`), to see what that release alone
frees. The exit status is 3 when the peak is over the line.
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import app, flags, logging
from ml_collections import config_flags

from langshift import memory

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment (path[:arg]).")
_WORKDIR = flags.DEFINE_string("workdir", None, "A new workdir for the run.")
_OUT = flags.DEFINE_string("out", "", "Also write the phases and peaks to this JSON file.")
_LIMIT_GIB = flags.DEFINE_float("limit_gib", 10.0, "The line each variant's peak must stay under.")
_BASELINE = flags.DEFINE_bool(
    "baseline", False, "Do not release memory at stage ends (what the release alone frees)."
)
flags.mark_flags_as_required(["config", "workdir"])


def _table(phases: list[memory.Phase]) -> list[str]:
  lines = [f"{'phase':<44} {'peak GiB':>9} {'start GiB':>9} {'end GiB':>8} {'seconds':>8}"]
  for p in phases:
    name = "  " * p.depth + p.name + ("" if p.exact else " (*)")
    lines.append(
        f"{name:<44} {p.peak_gib:>9.2f} {p.start_bytes / memory.GIB:>9.2f} "
        f"{p.end_bytes / memory.GIB:>8.2f} {p.seconds:>8.1f}"
    )
  return lines


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  from langshift.recipes.run import run_experiment  # pylint: disable=import-outside-toplevel

  if _BASELINE.value:
    memory.release = lambda: None  # every stage end (memory.run_stage) calls it by this name
  config, workdir = _CONFIG.value, _WORKDIR.value
  if os.path.exists(os.path.join(workdir, "stages")) or os.path.exists(
      os.path.join(workdir, "checkpoints")
  ):
    raise app.UsageError(f"--workdir={workdir} holds an earlier run; give a new one")
  start = time.perf_counter()
  with memory.phase("whole run") as whole:
    result = run_experiment(config, workdir)
  seconds = time.perf_counter() - start
  phases = memory.LOG.phases
  print("\n".join(_table(phases)))
  inner = [p for p in phases if p is not whole]
  grown = sorted(inner, key=lambda p: p.start_bytes - p.peak_bytes)[:5]
  print("largest contributors (peak above the phase's starting RSS; left resident at its end):")
  for p in grown:
    print(
        f"  {p.name}: +{(p.peak_bytes - p.start_bytes) / memory.GIB:.2f} GiB at peak, "
        f"{(p.end_bytes - p.start_bytes) / memory.GIB:+.2f} GiB left resident"
    )
  peak = whole.peak_bytes  # every inner phase folds its peak into the whole run's
  verdict = "within" if peak <= _LIMIT_GIB.value * memory.GIB else "OVER"
  variant = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--config=")), "?")
  print(
      f"{variant}: peak RSS {peak / memory.GIB:.2f} GiB ({verdict} the {_LIMIT_GIB.value:g} GiB"
      f" line), {seconds:.0f} s, status {result.get('status') or result.get('stop_reason')}"
      f"{' (baseline: no release at stage ends)' if _BASELINE.value else ''}"
  )
  if _OUT.value:
    record = {
        "variant": variant,
        "baseline": _BASELINE.value,
        "peak_rss_gib": round(peak / memory.GIB, 3),
        "seconds": round(seconds, 1),
        "limit_gib": _LIMIT_GIB.value,
        "phases": [p.record() for p in phases],
        "stages": {
            name: {k: v for k, v in s.items() if isinstance(v, (int, float, str, bool))}
            for name, s in (result.get("stages") or {}).items()
        },
    }
    os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
    with open(_OUT.value, "w") as f:
      json.dump(record, f, indent=2, default=str)
  if verdict == "OVER":
    sys.exit(3)


if __name__ == "__main__":
  app.run(main)
