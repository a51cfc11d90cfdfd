"""Orbax checkpoints of the full train state plus the data iterator, config and checksums.

Each step directory holds `state` (params, optimizer state, step, RNG; sharded arrays written by
every host), `data` (each process's input-iterator state as JSON, so a resumed run neither skips
nor repeats examples), `config` (the experiment config as JSON, compared on resume) and
`checksums` (dtype, shape and checksum of every array of `state`: `checksums.py`).

Restoring (`restore_latest_good`) tries the newest step first and verifies it against its
checksums; a step that cannot be read or fails verification is reported in one line, moved
aside to `<step>.corrupt` (never deleted) and the previous one is tried. When none can be
restored the run stops with an error naming each: it never restarts silently from step 0.
Temporary folders of saves a kill interrupted are removed at the next start
(`remove_temporary`), under the workdir lock, so they cannot be a live save's.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import shutil
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from langshift.errors import one_line
from langshift.train import checksums as checksums_lib

TMP_MARK = ".orbax-checkpoint-tmp"  # orbax's suffix of a step folder still being written
CORRUPT_SUFFIX = ".corrupt"


class CheckpointError(RuntimeError):
  """No checkpoint of a workdir can be restored, or one does not fit the run (one line)."""


def _state_file(process_index: int, process_count: int) -> str:
  return f"process_{process_index}-of-{process_count}.json"  # grain's layout


class IteratorStateHandler(ocp.JsonCheckpointHandler):
  """One JSON file per process. Every host reads its own share of each global batch, so its
  iterator state is its own: orbax's JsonCheckpointHandler writes the primary host's only, and
  the other hosts would resume from it at the wrong place."""

  # `_save_fn` is JsonCheckpointHandler's write step (orbax 0.12), which keeps its async commit
  # machinery; tests/train/test_trainer.py checks the per-process file, so an orbax change that
  # bypasses this hook fails there rather than silently writing one host's state.
  async def _save_fn(self, x, directory):
    (directory / _state_file(jax.process_index(), jax.process_count())).write_text(json.dumps(x))

  def restore(self, directory, item=None, args=None):
    del item, args
    index, count = jax.process_index(), jax.process_count()
    path = directory / _state_file(index, count)
    if path.exists():
      return json.loads(path.read_text())
    legacy = directory / "metadata"  # single-process checkpoints written before per-process files
    if count == 1 and legacy.exists():
      return json.loads(legacy.read_text())
    found = sorted(p.name for p in directory.glob("process_*.json"))
    raise ValueError(
        f"{directory}: no input-iterator state for process {index} of {count} "
        f"(found {found}); resume with as many processes as wrote the checkpoint"
    )


@ocp.args.register_with_handler(IteratorStateHandler, for_save=True)
@dataclasses.dataclass
class IteratorStateSave(ocp.args.CheckpointArgs):
  item: Any


@ocp.args.register_with_handler(IteratorStateHandler, for_restore=True)
@dataclasses.dataclass
class IteratorStateRestore(ocp.args.CheckpointArgs):
  item: Any = None


def make_manager(workdir: str, every_steps: int, keep: int, async_save: bool):
  # Every `every_steps` steps and on preemption (the loop also saves the last step), but not
  # orbax's default initial save of a fresh run: a step-1 checkpoint was a host copy of the whole
  # state written while the next steps ran, the demo's training peak RSS 8.4 GiB instead of 5.7
  # (docs/benchmarks.md, "Host memory"), for a checkpoint the next save replaces.
  policies = ocp.checkpoint_managers
  options = ocp.CheckpointManagerOptions(
      save_decision_policy=policies.AnySavePolicy(
          [
              policies.FixedIntervalPolicy(max(every_steps, 1)),
              policies.PreemptionCheckpointingPolicy(),
          ]
      ),
      max_to_keep=keep,
      enable_async_checkpointing=async_save,
      create=True,
  )
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), "checkpoints"), options=options
  )


def remove_temporary(directory: str) -> list[str]:
  """Removes the temporary step folders of saves that never finished (process 0; the caller
  holds the workdir lock, so none is being written); returns their paths."""
  found = sorted(glob.glob(os.path.join(str(directory), f"*{TMP_MARK}*")))
  if jax.process_index() == 0:
    for path in found:
      logging.warning("removing %s, left by a save that did not finish", path)
      shutil.rmtree(path, ignore_errors=True)
  return found


def _encode_iterator_state(state: Any) -> Any:
  if isinstance(state, bytes):
    return {"__bytes__": state.decode("utf-8")}
  return state


def _decode_iterator_state(state: Any) -> Any:
  if isinstance(state, dict) and set(state) == {"__bytes__"}:
    return state["__bytes__"].encode("utf-8")
  return state


def save(manager, step: int, state, iterator_state, config_json: str, force: bool = False) -> bool:
  """Saves `step` when due (or `force`), with the checksums of every array of `state`."""
  if not force and not manager.should_save(step):
    return False
  record = {"algorithm": checksums_lib.ALGORITHM, "arrays": checksums_lib.state_checksums(state)}
  args = ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      data=IteratorStateSave(_encode_iterator_state(iterator_state)),
      config=ocp.args.JsonSave(json.loads(config_json)),
      checksums=ocp.args.JsonSave(record),
  )
  return manager.save(step, args=args, force=force)


def restore(manager, abstract_state, step: int | None = None):
  """(state, iterator_state) from the latest (or given) step; arrays land in their shardings.
  Unverified: `restore_latest_good` is what a run resumes with."""
  step = manager.latest_step() if step is None else step
  restored = manager.restore(
      step,
      args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), data=IteratorStateRestore()
      ),
  )
  return restored["state"], _decode_iterator_state(restored["data"])


@dataclasses.dataclass
class Restored:
  state: Any
  iterator_state: Any
  step: int
  config: dict[str, Any] | None  # the config the checkpoint was written with
  verified: bool  # False: written before checkpoints carried checksums
  set_aside: list[str]  # one line per newer checkpoint that failed and was moved aside


def step_dir(manager, step: int) -> str:
  return os.path.join(str(manager.directory), str(step))


def _json_items(manager, step: int) -> dict[str, Any]:
  """The checkpoint's config and checksums (None where it has none: older checkpoints)."""
  present = [
      k for k in ("config", "checksums") if os.path.isdir(os.path.join(step_dir(manager, step), k))
  ]
  if not present:
    return {"config": None, "checksums": None}
  restored = manager.restore(
      step, args=ocp.args.Composite(**{k: ocp.args.JsonRestore() for k in present})
  )
  return {k: restored[k] if k in present else None for k in ("config", "checksums")}


def check_fits(where: str, record: dict[str, Any] | None, abstract_state) -> None:
  """A one-line error naming the first array whose shape (or presence) differs between the
  checkpoint and the state the run builds: another architecture or trainable set."""
  if not record:
    return
  recorded = record["arrays"]
  named = jax.tree_util.tree_flatten_with_path(abstract_state)[0]
  wanted = {checksums_lib.leaf_name(p): list(x.shape) for p, x in named if hasattr(x, "shape")}
  # Parameters first: a changed architecture is named by its weights, not their Adam moments.
  for name in sorted(set(recorded) | set(wanted), key=lambda n: (not n.startswith("params"), n)):
    if name not in recorded:
      raise CheckpointError(f"{where} has no array {name}, which this run's state has")
    if name not in wanted:
      raise CheckpointError(f"{where} holds an array {name} that this run's state does not")
    if list(recorded[name][2]) != wanted[name]:
      raise CheckpointError(
          f"{where} holds {name} of shape {tuple(recorded[name][2])}, this run's model needs "
          f"{tuple(wanted[name])}"
      )


def _all_processes_agree(ok: bool) -> bool:
  """True only if `ok` on every process (every process calls it at the same point)."""
  if jax.process_count() == 1:
    return ok
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

  return bool(np.all(multihost_utils.process_allgather(np.int32(ok))))


def _set_aside(manager, step: int) -> str:
  """Renames a failed step folder out of orbax's sight (it lists integer names only)."""
  source = step_dir(manager, step)
  target, n = source + CORRUPT_SUFFIX, 1
  while os.path.exists(target):
    n += 1
    target = f"{source}{CORRUPT_SUFFIX}{n}"
  if jax.process_index() == 0:
    os.rename(source, target)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

    multihost_utils.sync_global_devices(f"langshift set aside checkpoint {step}")
  return target


def restore_latest_good(
    manager, abstract_state, *, check_config: Callable[[str, dict | None], None] | None = None
) -> Restored:
  """The newest checkpoint that restores and verifies; the newer ones that do not are moved
  aside and reported. `check_config(where, stored_config)` may refuse a checkpoint written with
  another config (its error propagates: that is the user's choice to make, not a fallback)."""
  failed: list[tuple[int, str]] = []
  for step in sorted(manager.all_steps(), reverse=True):
    where = step_dir(manager, step)
    items, problem = None, None
    try:
      items = _json_items(manager, step)
    except Exception as e:  # pylint: disable=broad-exception-caught
      problem = one_line(e)
    if _all_processes_agree(problem is None):
      if check_config is not None:
        check_config(where, items["config"])
      check_fits(where, items["checksums"], abstract_state)
      try:
        state, iterator_state = restore(manager, abstract_state, step)
      except Exception as e:  # pylint: disable=broad-exception-caught
        problem = one_line(e)
    if _all_processes_agree(problem is None):
      record = items["checksums"]
      bad = checksums_lib.mismatches(record["arrays"], state) if record else []
      if bad:
        problem = f"{len(bad)} arrays differ from their recorded checksums (first: {bad[0]})"
      else:
        reports = []
        for old_step, why in failed:
          target = _set_aside(manager, old_step)
          reports.append(
              f"checkpoint {step_dir(manager, old_step)} cannot be restored ({why}); moved to "
              f"{target}; resuming from step {step}"
          )
        if failed:
          manager.reload()
        return Restored(state, iterator_state, step, items["config"], bool(record), reports)
    failed.append((step, problem or "failed on another process"))
    logging.warning("checkpoint %s cannot be restored: %s", where, failed[-1][1])
  listed = "; ".join(f"step {s}: {why}" for s, why in failed)
  raise CheckpointError(
      f"no checkpoint in {manager.directory} can be restored ({listed}); nothing was moved or "
      "deleted: move them away to start from scratch, or restore a copy"
  )


def finish_after_failure(manager) -> None:
  """Called when a run fails: lets an in-flight async save finish (or removes what it left),
  then closes the manager, so that the run's own error is the last thing it reports."""
  try:
    manager.wait_until_finished()
  except Exception as e:  # pylint: disable=broad-exception-caught
    logging.warning(
        "the checkpoint being saved when the run failed did not finish: %s", one_line(e)
    )
    remove_temporary(str(manager.directory))
  try:
    manager.close()
  except Exception as e:  # pylint: disable=broad-exception-caught
    logging.warning("closing the checkpoint manager: %s", one_line(e))
