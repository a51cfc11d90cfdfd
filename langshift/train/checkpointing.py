"""Orbax checkpoints of the full train state plus the data iterator, config and tokenizer.

Each step directory holds `state` (params, optimizer state, step, RNG; sharded arrays written by
every host), `data` (the input iterator's state as JSON, so a resumed run neither skips nor
repeats examples) and `config` (the experiment config as JSON).
"""

from __future__ import annotations

import json
import os
from typing import Any

import orbax.checkpoint as ocp


def make_manager(workdir: str, every_steps: int, keep: int, async_save: bool):
  options = ocp.CheckpointManagerOptions(
      save_interval_steps=max(every_steps, 1), max_to_keep=keep,
      enable_async_checkpointing=async_save, create=True)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                               options=options)


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
      data=ocp.args.JsonSave(_encode_iterator_state(iterator_state)),
      config=ocp.args.JsonSave(json.loads(config_json)))
  return manager.save(step, args=args, force=force)


def restore(manager, abstract_state, step: int | None = None):
  """(state, iterator_state) from the latest (or given) step; arrays land in their shardings."""
  step = manager.latest_step() if step is None else step
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
  return restored["state"], _decode_iterator_state(restored["data"])
