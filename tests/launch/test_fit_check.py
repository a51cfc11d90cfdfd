"""The fit check before a launch (launch/tpu/lib.sh fit_check): launch/tpu/run.sh and
launch/gpu/submit.sh compile the run for their target with `python -m langshift.aot` first and
stop with its one-line reason; --no-fit-check skips it. Dry runs with a stand-in interpreter
(the arguments it gets, the stop), and one real compilation for a TPU slice."""

import importlib.util
import sys

import pytest
from launch_testing import commands, fake_tool, run

MAIN_ARGS = [
    "--config=experiments/demo.py",
    "--workdir=gs://b/runs/demo",
    "--config.train.steps=3",
]
REFUSAL = (
    "langshift.aot: v5e-16: train / train step does not fit: needs 36.62 GiB (the TPU "
    "compiler's count) per chip, 15.75 GiB available"
)
TPU = ["--name=t", "--zone=z", "--no-follow", "--dry-run"]


def stand_in(tmp_path, status):
  """A python that logs its arguments and answers like langshift.aot with `status`."""
  log = tmp_path / "args"
  refuse = f'echo "{REFUSAL}" >&2\n' if status else ""
  script = (
      f'printf "%s\\n" "$@" > {log}\necho "| train | train step | ..."\n{refuse}exit {status}\n'
  )
  return fake_tool(tmp_path, "python", script), log


def test_tpu_run_stops_with_the_reason(tmp_path):
  python, log = stand_in(tmp_path, 3)
  args = [*TPU, "--accelerator-type=v5litepod-16", "--fit-model=llama3_8b", "--", *MAIN_ARGS]
  result = run("launch/tpu/run.sh", *args, env={"PYTHON": python}, check=False)
  assert result.returncode == 1
  assert commands(result.stdout) == []  # nothing started
  assert result.stderr.splitlines()[-1] == (
      "run.sh: fit check failed: " + REFUSAL.removeprefix("langshift.aot: ")
      + " (--no-fit-check skips the check)"
  )  # fmt: skip
  assert "| train | train step |" in result.stderr  # the table is shown
  assert log.read_text().splitlines() == [
      "-m",
      "langshift.aot",
      "--target=v5litepod-16",
      "--attention=config",
      "--config=experiments/demo.py",
      "--config.train.steps=3",
      "--model=llama3_8b",
  ]


def test_tpu_run_goes_on_when_it_fits_and_the_check_is_skippable(tmp_path):
  python, log = stand_in(tmp_path, 0)
  args = [*TPU, "--accelerator-type=v4-32", "--", *MAIN_ARGS]
  result = run("launch/tpu/run.sh", *args, env={"PYTHON": python})
  assert len(commands(result.stdout)) == 1  # the start on every worker
  assert "--target=v4-32" in log.read_text().splitlines()
  log.unlink()
  run("launch/tpu/run.sh", *TPU, "--accelerator-type=v4-32", "--no-fit-check", "--", *MAIN_ARGS)
  assert not log.exists()
  result = run("launch/tpu/run.sh", *TPU, "--", *MAIN_ARGS, env={"PYTHON": python})
  assert "fit check skipped" in result.stderr and not log.exists()


def test_gpu_submit_checks_the_nodes_gpus(tmp_path):
  python, log = stand_in(tmp_path, 3)
  args = ["--nodes=2", "--gpus-per-node=8", "--dry-run", "--fit-model=llama3_8b", "--", *MAIN_ARGS]
  result = run("launch/gpu/submit.sh", *args, env={"PYTHON": python}, check=False)
  assert result.returncode == 1 and commands(result.stdout) == []
  assert result.stderr.splitlines()[-1].startswith("submit.sh: fit check failed: v5e-16: train")
  assert log.read_text().splitlines()[2] == "--target=h100x8x2"
  python, log = stand_in(tmp_path, 0)
  result = run("launch/gpu/submit.sh", *args, env={"PYTHON": python})
  assert commands(result.stdout)[0][0] == "sbatch"
  args = ["--nodes=1", "--gpus-per-node=8", "--gpu-type=h100", "--dry-run", "--", *MAIN_ARGS]
  run("launch/gpu/submit.sh", *args, env={"PYTHON": python})
  assert log.read_text().splitlines()[2] == "--target=h100x8"


@pytest.mark.skipif(
    importlib.util.find_spec("libtpu") is None, reason="the `aot` extra is not installed"
)
def test_tpu_run_real_fit_check_refuses_llama3_8b_full_fp32_on_v5e_4():
  args = [*TPU, "--accelerator-type=v5litepod-4", "--fit-model=llama3_8b", "--", *MAIN_ARGS]
  env = {"PYTHON": sys.executable, "JAX_DEFAULT_MATMUL_PRECISION": "default"}
  result = run("launch/tpu/run.sh", *args, env=env, check=False, timeout=300)
  assert result.returncode == 1 and commands(result.stdout) == []
  last = result.stderr.splitlines()[-1]
  assert last.startswith("run.sh: fit check failed: v5e-4: train / train step does not fit: ")
  assert last.endswith("GiB available (--no-fit-check skips the check)")
