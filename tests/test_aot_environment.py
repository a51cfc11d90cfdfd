"""tests/aot and the launch fit check's real refusal, in the environment that has the TPU
compiler and the CUDA plugin.

`launch/setup_env.sh` keeps them out of `.venv` (with them every JAX start on a machine without
an accelerator logs the plugins' failed device searches) and installs them in `.venv-aot`, which
sees `.venv`'s packages. When this interpreter lacks libtpu, the tests of tests/aot run here under
`.venv-aot`, so the README's one test command still runs them; a missing `.venv-aot` is a failure
(run launch/setup_env.sh), not a skip.
"""

import importlib.util
import os
import subprocess

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
AOT_PYTHON = os.path.join(REPO, ".venv-aot", "bin", "python")
# Every test that compiles for a TPU or GPU target.
AOT_TESTS = ("tests/aot", "tests/launch/test_fit_check.py")


@pytest.mark.skipif(
    importlib.util.find_spec("libtpu") is not None,
    reason="this interpreter has the aot extra: tests/aot ran in it directly",
)
def test_aot_tests_pass_in_the_aot_environment():
  assert os.path.exists(AOT_PYTHON), f"no {AOT_PYTHON}: run launch/setup_env.sh"
  env = {k: v for k, v in os.environ.items() if k != "PYTEST_XDIST_WORKER"}
  env["PYTHONPATH"] = REPO
  result = subprocess.run(
      [AOT_PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", *AOT_TESTS],
      cwd=REPO,
      env=env,
      capture_output=True,
      text=True,
      timeout=1800,
  )
  summary = result.stdout.strip().splitlines()[-1:] if result.stdout else []
  assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
  assert summary and " passed" in summary[0] and "skipped" not in summary[0], summary
