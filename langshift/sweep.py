"""Runs an experiment's `sweep()` grid: one workdir per cell, then a results table and plots.

  python -m langshift.sweep --config=experiments/native_align_ar.py:size=cpu --root=workdir/na
  python -m langshift.sweep --config=... --root=... --print_commands  # a launch command per cell
  python -m langshift.sweep --config=... --root=... --cells=0,2-3      # some cells (index or name)
  python -m langshift.sweep --config=... --root=... --norun            # only collect results
  python -m langshift.sweep --config=... --root=... --config.train.steps=100  # for every cell

Each cell is `python -m langshift.main --config=<the same file:variant> --workdir=<root>/<cell>`
with the cell's overrides as `--config.<key>=<value>` flags (and the experiment's
`SWEEP_SETTINGS`, then the sweep's own `--config.` flags), run as a subprocess, one cell after
another. A finished cell is skipped; an interrupted one is resumed by running its same command
again (the engine and the recipes' stages resume from the workdir). A cell is done only when its
run exited 0 and its `result.json` says status done (`langshift/run_result.py`; the sweep never
reads the run's log for this): a preempted run (exit 75) is interrupted and resumed, a
`stop_after` run is "stopped", not done. The first cell that fails stops the sweep (`--keep_going`
goes on with the next ones); the results are written either way.

The root holds:
  sweep.json             the experiment, the flags given to every cell, and the cells
  <cell>/                the cell's workdir, named from its overrides
                         ("optimizer.learning_rate=0.01"; several joined by ",")
  <cell>/sweep_cell.json its overrides, command, attempts (exit code, seconds) and `done`
  <cell>/sweep.log       the output of its runs
  results.csv, results.md, plots/   (langshift/sweep_results.py)
  <shared>/              what the cells share, where SWEEP_SETTINGS names "../<shared>" (LEP's
                         tokenizer/init/CPT per tokenizer variant, experiments/lep_ru.py)
  xla_cache/             a persistent XLA compilation cache the cells share (--noxla_cache: none)

Cells launched elsewhere from `--print_commands` (a TPU VM, a SLURM job) write into the same
workdirs; `--norun` then collects their results (status `external`).

Every key of every cell is checked against the experiment's config before anything runs, and a
root that holds another experiment's sweep is refused: one-line errors naming the key or the
directory.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import importlib.util
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from absl import app, flags
from ml_collections import config_flags

from langshift import config_lib, run_result, sweep_results

MANIFEST = "sweep.json"
CELL_STATE = "sweep_cell.json"
CELL_LOG = "sweep.log"
# What a run prints when it stopped early on SIGTERM and exited 0 (langshift/train/trainer.py,
# langshift/recipes/*): such a cell is not done, its rerun continues it.
_MAX_NAME = 150  # longer names end in a hash: one path component stays well under 255 bytes


class SweepError(ValueError):
  """A one-line error about the sweep's input (a key, a root directory, a cell)."""


@dataclasses.dataclass(frozen=True)
class Cell:
  index: int
  name: str
  overrides: dict[str, Any]
  flags: tuple[str, ...]  # the overrides as `--config.<key>=<value>`


# --- Names and flags -----------------------------------------------------------------------------


def _value_text(value: Any) -> str:
  """How a value reads in a cell name."""
  if isinstance(value, bool):
    return str(value).lower()
  if isinstance(value, (list, tuple)):
    return "+".join(_value_text(v) for v in value)
  return repr(value) if isinstance(value, float) else str(value)


def cell_name(overrides: Mapping[str, Any]) -> str:
  """A stable, filesystem-safe directory name from a cell's overrides, in their order."""
  if not overrides:
    return "base"
  name = ",".join(f"{k}={_value_text(v)}" for k, v in overrides.items())
  name = re.sub(r"[^A-Za-z0-9._=,+-]", "_", name)
  if len(name) > _MAX_NAME:
    digest = hashlib.sha1(json.dumps(overrides, sort_keys=True, default=str).encode()).hexdigest()
    name = f"{name[:_MAX_NAME - 11]}-{digest[:10]}"
  return name


def flag_value(value: Any) -> str:
  """A value as the text of `--config.<key>=<text>` (what ml_collections' config flags parse)."""
  if isinstance(value, bool):
    return str(value).lower()
  if isinstance(value, (list, tuple)):
    return repr(tuple(value))
  return repr(value) if isinstance(value, float) else str(value)


def override_flags(overrides: Mapping[str, Any]) -> tuple[str, ...]:
  return tuple(f"--config.{k}={flag_value(v)}" for k, v in overrides.items())


def _flag_key(flag: str) -> str:
  return flag.split("=", 1)[0][len("--config.") :]


def config_flag_args(argv: Sequence[str]) -> list[str]:
  """The `--config.<key>=<value>` arguments of a command line (`--config.k v` joined to one)."""
  out, i = [], 0
  while i < len(argv):
    arg = argv[i]
    if arg.startswith("--config.") and "=" not in arg:
      if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
        raise SweepError(f"{arg}: give a value, as {arg}=<value>")
      out.append(f"{arg}={argv[i + 1]}")
      i += 2
      continue
    if arg.startswith("--config."):
      out.append(arg)
    i += 1
  return out


# --- Loading the experiment ----------------------------------------------------------------------


def _split_spec(spec: str) -> tuple[str, str]:
  path, _, variant = spec.partition(":")
  return path, variant


def parse_config(spec: str, config_flags_args: Sequence[str] = ()):
  """The config `python -m langshift.main --config=<spec> <flags>` would run, parsed the same way
  (ml_collections config flags on a private flag set)."""
  argv = ["langshift.sweep", f"--config={spec}", *config_flags_args]
  values = flags.FlagValues()
  holder = config_flags.DEFINE_config_file(
      "config", None, "", flag_values=values, lock_config=True, sys_argv=argv
  )
  try:
    values(argv)
  except flags.Error as e:
    # A failing get_config() arrives as its traceback: keep the first line and the error.
    lines = [line for line in str(e).splitlines() if line.strip()]
    message = lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1]}"
    raise SweepError(message) from None
  return holder.value


def load_module(path: str):
  if not os.path.isfile(path):
    raise SweepError(f"--config={path}: no such experiment file")
  spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3] or "experiment", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _check_keys(config, keys: Sequence[str], where: str) -> None:
  """One-line error for the first key the config does not have."""
  for key in keys:
    node, path = config, []
    for name in key.split("."):
      path.append(name)
      if not hasattr(node, "keys") or name not in node:
        missing = ".".join(path)
        raise SweepError(f"{where}: unknown config key {key!r} (the config has no {missing!r})")
      node = node[name]


# --- The sweep -----------------------------------------------------------------------------------


@dataclasses.dataclass
class Sweep:
  """An experiment's grid bound to a root directory. `Sweep.load` checks everything first."""

  experiment: str  # "experiments/x.py[:variant]", as given to --config
  root: str
  extra_flags: tuple[str, ...]  # `--config.` flags for every cell
  cells: list[Cell]
  python: str = sys.executable
  # A persistent XLA compilation cache shared by the cells (None: off). Cells of one grid
  # compile mostly the same programs, and a resumed cell exactly the same ones.
  compilation_cache: str | None = ""  # "": <root>/xla_cache

  @classmethod
  def load(cls, experiment: str, root: str, extra_flags: Sequence[str] = ()) -> Sweep:
    path, _ = _split_spec(experiment)
    module = load_module(path)
    if not callable(getattr(module, "sweep", None)):
      raise SweepError(f"--config={experiment}: {path} has no sweep() function")
    # The experiment's own flags for every cell (SWEEP_SETTINGS, e.g. LEP's folder of stages its
    # cells share) come first, so that the sweep's command-line flags can override them.
    extra_flags = override_flags(getattr(module, "SWEEP_SETTINGS", {})) + tuple(extra_flags)
    base = parse_config(experiment)
    _check_keys(base, [_flag_key(f) for f in extra_flags], "sweep flag")
    config = parse_config(experiment, extra_flags)
    cells, names = [], {}
    for index, overrides in enumerate(module.sweep()):
      overrides = dict(overrides)
      name = cell_name(overrides)
      where = f"{path} sweep() entry {index} ({name})"
      _check_keys(config, list(overrides), where)
      for flag in extra_flags:
        if _flag_key(flag) in overrides:
          raise SweepError(f"sweep flag {flag}: {where} sweeps that key; leave it to the cells")
      if name in names:
        raise SweepError(f"{where}: the same cell as entry {names[name]}")
      names[name] = index
      cell = Cell(index, name, overrides, override_flags(overrides))
      _check_round_trip(experiment, config, cell, extra_flags, where)
      cells.append(cell)
    if not cells:
      raise SweepError(f"--config={experiment}: sweep() lists no cells")
    sweep = cls(experiment, root, extra_flags, cells)
    sweep.check_root()
    return sweep

  # -- The root ----------------------------------------------------------------------------------

  def manifest(self) -> dict[str, Any]:
    return {
        "experiment": self.experiment,
        "flags": list(self.extra_flags),
        "cells": [{"name": c.name, "overrides": c.overrides} for c in self.cells],
    }

  def check_root(self) -> None:
    """Refuses a root that holds another experiment's sweep (or anything but a sweep)."""
    path = os.path.join(self.root, MANIFEST)
    if os.path.exists(path):
      with open(path) as f:
        theirs = json.load(f)
      if _experiment_id(theirs.get("experiment", "")) != _experiment_id(self.experiment):
        raise SweepError(
            f"{self.root} holds cells of {theirs.get('experiment')!r}, not {self.experiment!r}: "
            "choose another --root"
        )
      if list(theirs.get("flags", [])) != list(self.extra_flags):
        raise SweepError(
            f"{self.root} holds a sweep run with flags {theirs.get('flags')}, not "
            f"{list(self.extra_flags)}: choose another --root"
        )
    elif os.path.isdir(self.root):
      # Without a manifest only this grid's cell folders may be there (runs launched elsewhere
      # from --print_commands).
      known = {c.name for c in self.cells} | {"xla_cache"} | self._shared_folders()
      others = sorted(set(os.listdir(self.root)) - known)
      if others:
        raise SweepError(
            f"{self.root} holds {others[0]!r} and no {MANIFEST}: it is not a sweep of "
            f"{self.experiment!r}; choose another --root"
        )

  def _shared_folders(self) -> set[str]:
    """Folders beside the cells that the cells' flags name ("../<name>", SWEEP_SETTINGS)."""
    values = (f.split("=", 1)[1] for f in self.extra_flags if "=" in f)
    return {v[3:] for v in values if v.startswith("../") and "/" not in v[3:].rstrip("/")}

  def write_manifest(self) -> None:
    os.makedirs(self.root, exist_ok=True)
    path = os.path.join(self.root, MANIFEST)
    cells = {c.name: c for c in self.cells}
    if os.path.exists(path):  # keep cells that an earlier version of sweep() listed
      with open(path) as f:
        for old in json.load(f).get("cells", []):
          cells.setdefault(old["name"], Cell(-1, old["name"], old["overrides"], ()))
    manifest = self.manifest()
    manifest["cells"] = [{"name": c.name, "overrides": c.overrides} for c in cells.values()]
    _write_json(path, manifest)

  # -- Cells -------------------------------------------------------------------------------------

  def workdir(self, cell: Cell) -> str:
    return os.path.join(self.root, cell.name)

  def command(self, cell: Cell, python: str | None = None) -> list[str]:
    return [
        python or self.python,
        "-m",
        "langshift.main",
        f"--config={self.experiment}",
        f"--workdir={self.workdir(cell)}",
        *cell.flags,
        *self.extra_flags,
    ]

  def state(self, cell: Cell) -> dict[str, Any]:
    path = os.path.join(self.workdir(cell), CELL_STATE)
    if not os.path.exists(path):
      return {"done": False, "attempts": []}
    with open(path) as f:
      return json.load(f)

  def status(self, cell: Cell) -> str:
    return sweep_results.cell_status(self.state(cell))

  def select(self, spec: str) -> list[Cell]:
    """Cells by index ("0,2"), index range ("1-3") or name; "" selects all."""
    if not spec:
      return list(self.cells)
    by_name = {c.name: c for c in self.cells}
    chosen: dict[int, Cell] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
      if part in by_name:
        chosen[by_name[part].index] = by_name[part]
      elif re.fullmatch(r"\d+(-\d+)?", part):
        first, _, last = part.partition("-")
        for i in range(int(first), int(last or first) + 1):
          if i >= len(self.cells):
            raise SweepError(f"--cells={spec}: cell {i} does not exist ({len(self.cells)} cells)")
          chosen[i] = self.cells[i]
      else:
        raise SweepError(f"--cells={spec}: {part!r} is neither a cell index nor a cell name")
    return [chosen[i] for i in sorted(chosen)]

  def run(
      self,
      cells: Sequence[Cell] | None = None,
      *,
      keep_going: bool = False,
      log: Callable[[str], None] = print,
  ) -> bool:
    """Runs the cells not yet done, one after another; writes the results. True if all done."""
    cells = list(self.cells if cells is None else cells)
    self.write_manifest()
    all_done = True
    try:
      for n, cell in enumerate(cells, 1):
        prefix = f"[{n}/{len(cells)}] {cell.name}"
        if self.state(cell).get("done"):
          log(f"{prefix}: done before, skipped")
          continue
        outcome = self._run_cell(cell, prefix, log)
        all_done &= outcome == "done"
        # A cell stopped by `stop_after` did what was asked: the sweep goes on (not done, so a
        # rerun without `stop_after` continues it).
        if outcome not in ("done", "stopped") and not keep_going:
          log(f"sweep: stopped at {cell.name}; rerun the same command to resume")
          break
    finally:
      self.write_results(log=log)
    return all_done and all(self.state(c).get("done") for c in cells)

  def _run_cell(self, cell: Cell, prefix: str, log: Callable[[str], None]) -> str:
    workdir = self.workdir(cell)
    os.makedirs(workdir, exist_ok=True)
    state = self.state(cell)
    state.update(
        experiment=self.experiment, overrides=cell.overrides, command=self.command(cell, "python")
    )
    log_path = os.path.join(workdir, CELL_LOG)
    resumed = " (resuming)" if state["attempts"] else ""
    log(f"{prefix}: running{resumed}; log: {log_path}")
    started = time.time()
    # Recorded before the run: if the sweep itself dies, the cell reads as interrupted.
    attempt = {"started": _iso(started), "seconds": None, "exit_code": None}
    state["attempts"].append(dict(attempt, outcome="interrupted"))
    state["done"] = False
    _write_json(os.path.join(workdir, CELL_STATE), state)
    # The run writes its outcome to result.json at its end: one left by an earlier attempt must
    # not speak for this one (a killed run writes none).
    if os.path.exists(os.path.join(workdir, run_result.RESULT_FILE)):
      os.remove(os.path.join(workdir, run_result.RESULT_FILE))
    with open(log_path, "ab") as out:
      offset = out.tell()
      header = f"=== {_now()} attempt {len(state['attempts'])}: {shlex.join(self.command(cell))}"
      out.write((header + "\n").encode())
      out.flush()
      code, signalled = _run_child(self.command(cell), out, self._child_env())
    seconds = time.time() - started
    with open(log_path, "rb") as f:
      f.seek(offset)
      output = f.read().decode(errors="replace")
    outcome = cell_outcome(code, run_result.read_result(workdir), signalled)
    done = outcome == "done"
    state["attempts"][-1] = dict(
        attempt, seconds=round(seconds, 1), exit_code=code, outcome=outcome
    )
    state["done"] = done
    _write_json(os.path.join(workdir, CELL_STATE), state)
    if done:
      headline = sweep_results.headline(sweep_results.cell_values(workdir))
      log(f"{prefix}: done in {seconds:.1f} s{headline}")
    else:
      last = _last_line(output)
      log(f"{prefix}: {outcome} (exit {code}) after {seconds:.1f} s{': ' + last if last else ''}")
    if signalled:
      raise KeyboardInterrupt(f"sweep interrupted during {cell.name}")
    return outcome

  def _child_env(self) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if self.compilation_cache is not None and "JAX_COMPILATION_CACHE_DIR" not in env:
      env["JAX_COMPILATION_CACHE_DIR"] = self.compilation_cache or os.path.join(
          self.root, "xla_cache"
      )
      env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    return env

  def write_results(self, log: Callable[[str], None] = print) -> dict[str, str]:
    paths = sweep_results.write_results(self.root)
    log(f"sweep: results in {paths['md']} ({paths['plots']})")
    return paths


def _check_round_trip(experiment, config, cell: Cell, extra_flags, where: str) -> None:
  """The cell's command-line flags must give the config its overrides describe."""
  try:
    expected = config_lib.flatten(config_lib.apply_overrides(config, cell.overrides))
  except (KeyError, TypeError, ValueError) as e:
    raise SweepError(f"{where}: {e}") from None
  parsed = config_lib.flatten(parse_config(experiment, [*cell.flags, *extra_flags]))
  for key in cell.overrides:
    got, want = parsed.get(key), expected.get(key)
    if got != want and not (isinstance(got, (int, float)) and got == want):
      raise SweepError(f"{where}: {key}={want!r} reads back as {got!r} from the command line")


def _experiment_id(spec: str) -> tuple[str, str]:
  path, variant = _split_spec(spec)
  return os.path.basename(path), variant.strip()


def cell_outcome(code: int, result: Mapping[str, Any] | None, signalled: bool = False) -> str:
  """done | stopped | interrupted | failed, from a run's exit code and its result.json (never its
  log): done only when the run exited 0 and recorded status done; a `stop_after` run stopped
  (not done: rerun without it); preempted (exit 75), killed or signalled runs are interrupted
  (rerun to resume)."""
  status = (result or {}).get("status")
  if signalled or code < 0 or code == run_result.EXIT_PREEMPTED or status == run_result.PREEMPTED:
    return "interrupted"
  if code == 0 and status == run_result.DONE:
    return "done"
  if code == 0 and status == run_result.STOPPED:
    return "stopped"
  return "failed"


def _run_child(command: list[str], out, env: Mapping[str, str]) -> tuple[int, bool]:
  """Runs a cell; SIGTERM/SIGINT to the sweep is passed on as SIGTERM (the run checkpoints and
  stops). Returns (exit code, whether the sweep itself was signalled)."""
  # Its own session: a terminal's Ctrl-C reaches the sweep only, which asks the run to stop
  # cleanly; if the sweep dies, the kernel sends the run SIGTERM (Linux), so no orphan trains on.
  proc = subprocess.Popen(
      command,
      stdout=out,
      stderr=subprocess.STDOUT,
      env=env,
      start_new_session=True,
      preexec_fn=_terminate_with_parent if sys.platform.startswith("linux") else None,
  )
  signalled = []

  def forward(signum, frame):
    del frame
    signalled.append(signum)
    if proc.poll() is None:
      proc.send_signal(signal.SIGTERM)

  previous = {}
  for signum in (signal.SIGTERM, signal.SIGINT):
    try:
      previous[signum] = signal.signal(signum, forward)
    except ValueError:  # not the main thread (a notebook's worker): the defaults stay
      pass
  try:
    code = proc.wait()
  finally:
    for signum, handler in previous.items():
      signal.signal(signum, handler)
  return code, bool(signalled)


def _terminate_with_parent() -> None:
  import ctypes  # pylint: disable=import-outside-toplevel

  pr_set_pdeathsig = 1
  ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _write_json(path: str, value) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(value, f, indent=2, default=str)
  os.replace(tmp, path)


def _last_line(text: str) -> str:
  lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
  return lines[-1][:300] if lines else ""


def _now() -> str:
  return datetime.datetime.now().isoformat(timespec="seconds")


def _iso(t: float) -> str:
  return datetime.datetime.fromtimestamp(t).isoformat(timespec="seconds")


# --- Command line --------------------------------------------------------------------------------


def _define_flags() -> None:
  """The CLI's flags, defined when it runs (not on import: tests import this module beside
  others that define `--root`)."""
  flags.DEFINE_string("config", None, "Experiment file with sweep(): path[:variant].")
  flags.DEFINE_string("root", None, "Directory of the sweep: one workdir per cell.")
  flags.DEFINE_bool("run", True, "Run the cells (--norun: only collect the results).")
  flags.DEFINE_bool("print_commands", False, "Print each cell's command; run nothing.")
  flags.DEFINE_string("cells", "", "Cells by index (0,2), range (1-3) or name; all if ''.")
  flags.DEFINE_bool("keep_going", False, "Go on with the next cell after a failure.")
  flags.DEFINE_bool(
      "xla_cache", True, "Cells share a persistent XLA compilation cache in <root>/xla_cache."
  )


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  try:
    sweep = Sweep.load(f.config, f.root, config_flag_args(sys.argv[1:]))
    if not f.xla_cache:
      sweep.compilation_cache = None
    cells = sweep.select(f.cells)
    if f.print_commands:
      for cell in cells:
        print(shlex.join(sweep.command(cell, python="python")))
      return
    if not f.run:  # e.g. cells launched elsewhere from --print_commands
      sweep.write_manifest()
      sweep.write_results()
      return
    ok = sweep.run(cells, keep_going=f.keep_going)
  except SweepError as e:
    sys.exit(f"sweep: {e}")
  except KeyboardInterrupt as e:
    sys.exit(f"sweep: {e or 'interrupted'}; rerun the same command to resume")
  if not ok:
    sys.exit(1)


def _run() -> None:
  _define_flags()
  flags.mark_flags_as_required(["config", "root"])
  # `--config.<key>=<value>` flags are the cells' own: absl must let them through.
  skip_next = {i + 1 for i, a in enumerate(sys.argv) if a.startswith("--config.") and "=" not in a}
  argv = [a for i, a in enumerate(sys.argv) if i not in skip_next and not a.startswith("--config.")]
  app.run(main, argv=argv)


if __name__ == "__main__":
  _run()
