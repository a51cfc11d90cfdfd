"""Orbax checkpoints of the full train state plus the data iterator, config and tokenizer.

Each step directory holds `state` (params, optimizer state, step, RNG; sharded arrays written by
every host), `data` (each process's input-iterator state as JSON, so a resumed run neither skips
nor repeats examples) and `config` (the experiment config as JSON).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import orbax.checkpoint as ocp


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
  options = ocp.CheckpointManagerOptions(
      save_interval_steps=max(every_steps, 1),
      max_to_keep=keep,
      enable_async_checkpointing=async_save,
      create=True,
  )
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), "checkpoints"), options=options
  )


def _encode_iterator_state(state: Any) -> Any:
  if isinstance(state, bytes):
    return {"__bytes__": state.decode("utf-8")}
  return state


def _decode_iterator_state(state: Any) -> Any:
  if isinstance(state, dict) and set(state) == {"__bytes__"}:
    return state["__bytes__"].encode("utf-8")
  return state


def save(manager, step: int, state, iterator_state, config_json: str, force: bool = False) -> bool:
  args = ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      data=IteratorStateSave(_encode_iterator_state(iterator_state)),
      config=ocp.args.JsonSave(json.loads(config_json)),
  )
  return manager.save(step, args=args, force=force)


def restore(manager, abstract_state, step: int | None = None):
  """(state, iterator_state) from the latest (or given) step; arrays land in their shardings."""
  step = manager.latest_step() if step is None else step
  restored = manager.restore(
      step,
      args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), data=IteratorStateRestore()
      ),
  )
  return restored["state"], _decode_iterator_state(restored["data"])
