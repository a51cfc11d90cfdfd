"""Running the launch scripts in tests: a command line, and executables standing in for tools."""

import os
import shlex
import subprocess

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def run(script, *args, env=None, check=True, timeout=60):
  result = subprocess.run(
      ["bash", os.path.join(REPO, script), *args],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=timeout,
      env=dict(os.environ, **(env or {})),
  )
  if check:
    assert result.returncode == 0, result.stdout + result.stderr
  return result


def commands(output):
  """The printed commands as argument lists (comment lines dropped): what a shell would run."""
  return [shlex.split(line) for line in output.splitlines() if line and not line.startswith("#")]


def fake_tool(directory, name, script):
  """An executable `name` in `directory` running the bash `script` (see the calls it logs)."""
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, name)
  with open(path, "w") as f:
    f.write("#!/usr/bin/env bash\n" + script)
  os.chmod(path, 0o755)
  return path
