"""`python -m langshift.aot --config=experiments/<x>.py[:arg] --target=v5e-16`: compile every
program of the experiment for the target, on this machine, and say whether each fits. Without
--target it compiles for the slice the experiment is sized for (`config.mesh.target`: each
published setting names one).

  python -m langshift.aot --config=experiments/native_align_ar.py --target=v4-32 \\
      --model=llama3_8b --model=native_align.worker_init=qwen1_5_4b

`--model` gives shapes where the config's checkpoint path is not on this machine: a preset
(`langshift/aot/models.py`) or a checkpoint directory (only its config.json is read), for every
run, or `KEY=SOURCE` for the run whose checkpoint is config key KEY. The table (per chip:
arguments, temporaries, peak against the usable HBM, collectives, the step-time lower bound at
the chip's peak, compile time) goes to stdout, a JSON report to `--json`. Exit status: 0 every
program fits, 3 one does not (its one-line reason on stderr), 2 bad input.

TPU programs compile with libtpu, GPU programs with the CUDA plugin (the `aot` extra); neither
needs the accelerator. Devices are compile-only, so JAX itself runs on the CPU here.
"""

import os

# Compile-only devices need no accelerator: JAX runs on the CPU (a TPU VM's own TPU stays free
# for the run), and two checks may compile at once (libtpu otherwise takes a per-host lock).
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")

import json  # noqa: E402
import sys  # noqa: E402

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from langshift.errors import one_line  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (path[:arg]).", lock_config=True
)
_TARGET = flags.DEFINE_string(
    "target", "", "Slice or GPU nodes: v4-32, v5e-16, h100x8, ... Default: config.mesh.target."
)
_NUM_SLICES = flags.DEFINE_integer("num_slices", 1, "TPU slices joined over DCN.")
_MODEL = flags.DEFINE_multi_string(
    "model", [], "Preset or checkpoint dir for every run, or KEY=SOURCE for one config key."
)
_ATTENTION = flags.DEFINE_enum(
    "attention",
    "native",
    ["native", "config", "xla"],
    "native: splash on TPU, cuDNN on GPU; config: each run's model.attention_impl (what the run "
    "executes as configured); xla: the XLA path.",
)
_ONLY = flags.DEFINE_string("only", "", "Only the runs whose name contains this.")
_JSON = flags.DEFINE_string("json", "", "Write the JSON report here.")
flags.mark_flags_as_required(["config"])


def _model_sources(values) -> dict[str, str]:
  out = {}
  for v in values:
    key, _, source = v.rpartition("=")
    out[key or "*"] = source
  return out


def config_target(config, flag: str) -> str:
  """--target, else the slice the experiment is sized for (config.mesh.target)."""
  if flag:
    return flag
  if not config.mesh.get("target"):
    raise ValueError(
        "no --target, and the config names no slice (config.mesh.target is empty: a CPU-sized "
        "setting); give --target=<slice>"
    )
  return config.mesh.target


def format_table(target, reports) -> str:
  from langshift.aot import targets as targets_lib  # pylint: disable=import-outside-toplevel
  from langshift.aot.compile import gib  # pylint: disable=import-outside-toplevel

  chip = targets_lib.CHIPS[target.chip]
  lines = [
      f"{target.name}: {target.chips} x {chip.name}, {gib(chip.hbm_bytes):.2f} GiB HBM per chip "
      f"({chip.source}), usable {gib(targets_lib.usable_bytes(target)):.2f} GiB; peak "
      f"{chip.peak_flops / 1e12:.0f} TFLOP/s bf16",
      "| run | program | settings | attention | arguments | temporaries | peak | fits | "
      "collectives | model TFLOP/chip | step bound | compile |",
      "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  ]
  for r in reports:
    settings = ", ".join(f"{k} {v}" for k, v in r.settings.items())
    if r.refused:
      fits = "**no** (compiler: out of HBM)"
      mem = ("—", "—", "—")
    else:
      by = gib(abs(r.margin_bytes))
      fits = f"yes, {by:.2f} GiB spare" if r.fits else f"**no, by {by:.2f} GiB**"
      mem = tuple(f"{gib(x):.2f} GiB" for x in (r.argument_bytes, r.temp_bytes, r.peak_bytes))
    coll = ", ".join(f"{k} {v}" for k, v in r.collectives.items()) or "none"
    lines.append(
        f"| {r.run} | {r.program} | {settings} | {r.attention} | {mem[0]} | {mem[1]} | {mem[2]} "
        f"| {fits} | {coll} | {r.model_flops / 1e12:.2f} | >= {r.step_bound_s * 1e3:.1f} ms "
        f"| {r.compile_s:.1f} s |"
    )
  return "\n".join(lines)


def report_json(target, num_slices, reports) -> dict:
  import dataclasses  # pylint: disable=import-outside-toplevel

  from langshift.aot import targets as targets_lib  # pylint: disable=import-outside-toplevel

  chip = targets_lib.CHIPS[target.chip]
  return dict(
      target=target.name,
      num_slices=num_slices,
      chips=target.chips * num_slices,
      chip=dataclasses.asdict(chip),
      usable_bytes=targets_lib.usable_bytes(target),
      fits=all(r.fits for r in reports),
      programs=[
          dict(dataclasses.asdict(r), fits=r.fits, margin_bytes=r.margin_bytes) for r in reports
      ],
  )


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  from langshift.aot import compile as compile_lib  # pylint: disable=import-outside-toplevel
  from langshift.aot import targets as targets_lib  # pylint: disable=import-outside-toplevel

  try:
    target = targets_lib.get_target(config_target(_CONFIG.value, _TARGET.value))
    reports = compile_lib.compile_config(
        _CONFIG.value,
        target,
        num_slices=_NUM_SLICES.value,
        model_source=_model_sources(_MODEL.value),
        attention=_ATTENTION.value,
        only=_ONLY.value,
    )
  except (ValueError, RuntimeError, NotImplementedError) as e:
    print(f"langshift.aot: error: {one_line(e, max_causes=0)}", file=sys.stderr)
    sys.exit(2)
  print(format_table(target, reports))
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(report_json(target, _NUM_SLICES.value, reports), f, indent=1)
  refused = [r for r in reports if not r.fits]
  for r in refused:
    print(f"langshift.aot: {compile_lib.fit_line(target, r)}", file=sys.stderr)
  sys.exit(3 if refused else 0)


if __name__ == "__main__":
  app.run(main)
