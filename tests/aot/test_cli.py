"""`python -m langshift.aot`: two processes compiling at once (one fits, one is refused with its
one-line reason), the JSON report, and bad input named before anything compiles."""

import json
import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("libtpu", reason="the TPU compiler (the `aot` extra) is not installed")

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEMO = "--config=experiments/demo.py"


def aot(*args):
  env = dict(os.environ, PYTHONPATH=REPO)
  env.pop("JAX_DEFAULT_MATMUL_PRECISION", None)  # tests/conftest.py's; runs use the default
  return subprocess.Popen(
      [sys.executable, "-m", "langshift.aot", *args],
      cwd=REPO,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
  )


def finish(proc, timeout=300):
  out, err = proc.communicate(timeout=timeout)
  return proc.returncode, out, err


def errors(err):
  return [line for line in err.splitlines() if line.startswith("langshift.aot:")]


def test_two_processes_compile_at_once_and_refusal(tmp_path):
  report = tmp_path / "fits.json"
  # No --target: the slice the config names (an experiment's mesh.target).
  fits = aot(DEMO, "--config.mesh.target=v5e-4", "--model=tiny", f"--json={report}")
  # Llama-3-8B trained in full in fp32 on four 16 GiB chips: 32 GiB of state per chip.
  refused = aot(DEMO, "--target=v5e-4", "--model=llama3_8b")
  code, out, err = finish(fits)
  assert code == 0, err[-2000:]
  assert "| train | train step |" in out and "yes," in out
  data = json.loads(report.read_text())
  assert data["target"] == "v5e-4" and data["chips"] == 4 and data["fits"]
  (program,) = data["programs"]
  assert program["attention"] == "splash" and program["argument_bytes"] > 0
  assert program["collectives"]["all-gather"] > 0

  code, out, err = finish(refused)
  assert code == 3, err[-2000:]
  (line,) = errors(err)
  assert re.fullmatch(
      r"langshift.aot: v5e-4: train / train step does not fit: needs [\d.]+ GiB \(the TPU "
      r"compiler's count\) per chip, [\d.]+ GiB available",
      line,
  ), line


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--target=v5e-5"], "--target=v5e-5 is not a known target; known: v4-8, "),
        ([], "no --target, and the config names no slice (config.mesh.target is empty"),
        (
            ["--target=v5e-4", "--model=tiny", "--config.mesh.ici.fsdp=3"],
            "v5e-4 (4 chips, 1 slice(s)) cannot take the config's mesh ici={'data': 1, 'fsdp': 3",
        ),
        (
            ["--target=v5e-4", "--config.init_from_hf=/no/such/model"],
            "config.init_from_hf='/no/such/model' is neither a checkpoint directory",
        ),
        (["--target=v5e-4", "--model=llama9_70b"], "--model='llama9_70b' is neither a checkpoint"),
    ],
)
def test_bad_input_one_line_before_compiling(args, expected):
  code, out, err = finish(aot(DEMO, *args), timeout=120)
  assert code == 2
  (line,) = errors(err)
  assert line.startswith(f"langshift.aot: error: {expected}"), line
  assert out == ""
