"""A rehearsal of an experiment's published setting: `python -m langshift.rehearse
--config=experiments/pinch.py --workdir=/tmp/rehearse/pinch`.

It runs the experiment's default config, stage by stage as published (evaluation and export
included), with every model replaced by a tiny random one of the same kind (vocabulary family,
chat template or none, architecture features), inputs written under `<workdir>/rehearsal/` in the
recipe's layout and the server roles answered by a local OpenAI-compatible fake
(`langshift/rehearsal/`). Only the sizes the experiment file declares (`REHEARSAL_SIZES`), the
paths the rehearsal fills, the endpoints and, where the experiment lists them
(`REHEARSAL_STANDINS`), output-quality filters that a random model cannot pass (InsCP's perplexity
bound, native alignment's filter of the worker's rewrites) differ from the published config: the
differing keys are printed by kind before anything runs, and any other difference is refused
(`langshift.rehearsal.config_check`). Minutes on a CPU.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from typing import Any

from absl import app, flags, logging

from langshift import run_result
from langshift.errors import one_line

_CONFIG = flags.DEFINE_string("config", None, "Experiment file (path[:arg]); default arg.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where the rehearsal's inputs and run go.")
_VERBOSE = flags.DEFINE_bool("verbose", False, "On an error, raise it with its traceback.")
flags.mark_flags_as_required(["config", "workdir"])

INPUTS_DIR = "rehearsal"


def load_experiment(spec: str):
  """(module, published config) of `path[:arg]`."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"--config={spec}: no such experiment file")
  name = os.path.splitext(os.path.basename(path))[0]
  module_spec = importlib.util.spec_from_file_location(f"rehearsed_{name}", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module, module.get_config(arg or None)


def rehearsal_config(module, published, workdir: str, server_url: str):
  """(rehearsal config, {kind: keys}): the published config with its declared sizes, the
  paths of inputs written under `<workdir>/rehearsal/` and the fake server's endpoints."""
  # pylint: disable=import-outside-toplevel
  from langshift import config_lib
  from langshift.rehearsal import config_check, inputs

  sizes = getattr(module, "REHEARSAL_SIZES", None)
  if sizes is None:
    raise ValueError(f"{module.__file__}: declares no REHEARSAL_SIZES")
  config_check.check_sizes(
      sizes, published, f"{os.path.basename(module.__file__)}: REHEARSAL_SIZES"
  )
  standins = getattr(module, "REHEARSAL_STANDINS", {})
  config_check.check_standins(
      standins, published, f"{os.path.basename(module.__file__)}: REHEARSAL_STANDINS"
  )
  # Inputs as large as the sizes need.
  sized = config_lib.apply_overrides(published, {**sizes, **standins})
  filled = inputs.write_inputs(sized, os.path.join(workdir, INPUTS_DIR), server_url)
  config = config_lib.apply_overrides(sized, filled.overrides)
  diff = config_check.differences(
      published,
      config,
      sizes=sizes,
      paths=filled.paths,
      endpoints=filled.endpoints,
      standins=standins,
  )
  return config, diff, filled


def rehearse(spec: str, workdir: str, *, log=print) -> dict[str, Any]:
  """Runs the rehearsal of `spec` in `workdir`; the recipe's result."""
  # pylint: disable=import-outside-toplevel
  from langshift.recipes.run import run_experiment
  from langshift.rehearsal import config_check
  from langshift.rehearsal.fake_server import FakeOpenAIServer

  # Offline by design: lm-eval's datasets library reads the stand-in tasks' local files only.
  os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
  os.environ.setdefault("HF_HUB_OFFLINE", "1")
  module, published = load_experiment(spec)
  with FakeOpenAIServer() as server:
    config, diff, _ = rehearsal_config(module, published, workdir, server.url)
    log(f"langshift: rehearsal of {spec}: differs from the published setting at")
    log(config_check.format_differences(diff, published, config))
    result = run_experiment(config, workdir)
    with open(os.path.join(workdir, INPUTS_DIR, "server_requests.jsonl"), "w") as f:
      for request in server.requests:
        f.write(json.dumps(request, ensure_ascii=False) + "\n")
  log(f"langshift: rehearsal {run_result.status_of(result)}: {workdir}")
  return result


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:  # orbax logs every file it renames at INFO
    logging.set_verbosity(logging.WARNING)
  try:
    result = rehearse(_CONFIG.value, _WORKDIR.value)
  except Exception as e:  # pylint: disable=broad-exception-caught
    if _VERBOSE.value:
      raise
    print(f"langshift: error: {one_line(e)}", file=sys.stderr, flush=True)
    sys.exit(1)
  sys.exit(0 if run_result.status_of(result) == run_result.DONE else 1)


if __name__ == "__main__":
  app.run(main)
