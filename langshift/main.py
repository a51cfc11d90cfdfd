"""Entry point: `python -m langshift.main --config=experiments/demo.py[:variant] --workdir=DIR`.

Overrides: `--config.optimizer.learning_rate=1e-5`. `config.recipe` picks what runs (cpt: the
training engine, or one of the recipes of `langshift/recipes/run.py`); all logic lives in
importable libraries.

An error ends the command with one line on stderr, `langshift: error: ...`, naming the file, key
or value at fault; its traceback goes to `<workdir>/langshift-error.log` (`--verbose` shows it
instead). Every run ends by writing `<workdir>/result.json` (status done / stopped / preempted /
failed) and exits 0 (done, stopped), 75 (preempted: rerun to continue) or 1 (failed); see
`langshift/run_result.py`.
"""

import os
import socket
import sys
import time
import traceback

from absl import app, flags, logging
from ml_collections import config_flags

from langshift import run_result
from langshift.errors import message, one_line

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (path[:arg]).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, metrics and exports go here.")
_VERBOSE = flags.DEFINE_bool(
    "verbose", False, "On an error, raise it with its traceback instead of one line."
)
flags.mark_flags_as_required(["config", "workdir"])

ERROR_LOG = "langshift-error.log"


def _fail(message: str, code: int) -> None:
  sys.stderr.flush()
  sys.stdout.flush()
  print(f"langshift: error: {message}", file=sys.stderr, flush=True)
  sys.exit(code)


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, with a bad flag or config override reported on one line."""
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # pylint: disable=broad-exception-caught
    if "--verbose" in argv:
      raise
    text = one_line(e, max_causes=0)
    if isinstance(e, (AttributeError, KeyError)):  # a --config.<key> override the config lacks
      key = " ".join(message(e).split()).split("'")[1:2]
      given = [a for a in argv if a.startswith("--config.") and key and key[0] in a.split("=")[0]]
      text = " ".join(message(e).split())
      text = f"{given[0] if given else 'a --config override'}: no such config key ({text})"
    _fail(text, 2)
    raise  # unreachable


def _log_traceback(workdir: str | None) -> str | None:
  """Appends the traceback of the error being handled to the workdir's error log."""
  for directory in filter(None, (workdir, os.environ.get("TMPDIR", "/tmp"))):
    path = os.path.join(directory, ERROR_LOG)
    try:
      os.makedirs(directory, exist_ok=True)
      with open(path, "a") as f:
        f.write(
            f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} host {socket.gethostname()} pid "
            f"{os.getpid()}: {' '.join(sys.argv)}\n{traceback.format_exc()}\n"
        )
      return path
    except OSError:
      continue
  return None


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:  # orbax logs every file it renames at INFO
    logging.set_verbosity(logging.WARNING)
  try:
    # pylint: disable=import-outside-toplevel
    from langshift.parallel.distributed import maybe_initialize_distributed
    from langshift.recipes.run import run_experiment

    maybe_initialize_distributed()
    result = run_experiment(_CONFIG.value, _WORKDIR.value)
  except Exception as e:  # pylint: disable=broad-exception-caught
    if _VERBOSE.value:
      raise
    # A run refused for missing inputs leaves the workdir as it was (no error log or result
    # either: the line says all there is).
    from langshift.recipes.required_inputs import MissingInputsError  # pylint: disable=import-outside-toplevel

    log = None
    if not isinstance(e, MissingInputsError):
      log = _log_traceback(_WORKDIR.value)
      _write_result(None, error=one_line(e))
    _fail(one_line(e) + (f" (traceback: {log}; --verbose shows it here)" if log else ""), 1)
  record = _write_result(result)
  print(f"langshift: peak RSS {record['peak_rss_gib']:.2f} GiB (this process, whole run)")
  sys.stdout.flush()
  sys.exit(run_result.EXIT_CODES[record["status"]])


def _write_result(result, error: str | None = None) -> dict:
  """`<workdir>/result.json` (langshift/run_result.py); a failure to write it is not the run's."""
  record = run_result.result_record(result, recipe=_CONFIG.value.get("recipe", "cpt"), error=error)
  try:
    run_result.write_result(_WORKDIR.value, record)
  except OSError as e:
    print(f"langshift: could not write {run_result.RESULT_FILE}: {e}", file=sys.stderr)
  return record


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
