"""LANGSHIFT_FAULT crash points: parsed strictly, fire once at the named count, else nothing."""

import os
import subprocess
import sys

import pytest

from langshift import faults

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
_CHILD = (
    "from langshift import faults\n"
    "for i in range(1, 6):\n"
    "  print(i, flush=True)\n"
    "  faults.fault_point('step', i)\n"
)


def test_parse_and_refuse_bad_entries():
  assert faults.parse_faults("kill@step=5, exit@records=8") == [
      ("kill", "step", 5),
      ("exit", "records", 8),
  ]
  with pytest.raises(ValueError, match=r"entry 'boom@step=5' is not <action>@<counter>=<n>"):
    faults.parse_faults("boom@step=5")
  with pytest.raises(ValueError, match=r"entry 'kill@step' is not"):
    faults.parse_faults("kill@step")


@pytest.mark.parametrize(
    "spec,returncode,printed",
    [
        ("exit@step=3", faults.EXIT_CODE, "1\n2\n3\n"),
        ("kill@step=2", -9, "1\n2\n"),
        ("kill@records=2", 0, "1\n2\n3\n4\n5\n"),  # another counter: never fires
        ("", 0, "1\n2\n3\n4\n5\n"),
    ],
)
def test_fault_point_fires_at_the_named_count(spec, returncode, printed):
  env = {**os.environ, "PYTHONPATH": REPO, faults.ENV_VAR: spec}
  out = subprocess.run(
      [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=60
  )
  assert (out.returncode, out.stdout) == (returncode, printed)
