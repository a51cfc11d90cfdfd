"""lm-eval is an optional extra: without it langshift imports, and an `lm_eval_tasks` entry or
`python -m langshift.lm_eval` says in one line what to install."""

import os
import subprocess
import sys

# `sys.modules["lm_eval"] = None` makes every `import lm_eval...` fail as if it were not installed.
_WITHOUT_LM_EVAL = """
import sys
sys.modules["lm_eval"] = None
from langshift.evaluation.evaluators import EvalContext, build_evaluators, lm_eval_tasks
import langshift.evaluation.lm_eval_backend_evaluator
ctx = EvalContext(None, None, object(), None, (), None, None, 16, 4)
try:
  build_evaluators({"harness": lm_eval_tasks(tasks=["arc_easy"])}, ctx)
except ValueError as e:
  print(e)
"""


def _python(*args):
  env = dict(os.environ, PYTHONPATH=os.getcwd())
  return subprocess.run(
      [sys.executable, *args], env=env, capture_output=True, text=True, check=False
  )


def test_without_lm_eval_langshift_imports_and_the_entry_names_the_extra():
  done = _python("-c", _WITHOUT_LM_EVAL)
  assert done.returncode == 0, done.stderr[-2000:]
  (line,) = done.stdout.strip().splitlines()
  assert line.startswith("config.evals.harness: lm_eval_tasks needs lm-evaluation-harness")
  assert line.endswith("pip install -e .[lm_eval]")


def test_without_lm_eval_the_command_names_the_extra():
  done = _python(
      "-c",
      "import sys, runpy; sys.modules['lm_eval'] = None; "
      "runpy.run_module('langshift.lm_eval', run_name='__main__')",
  )
  assert done.returncode == 1
  assert (
      done.stderr.strip()
      .splitlines()[-1]
      .startswith("langshift.lm_eval: lm-evaluation-harness is not installed")
  )
