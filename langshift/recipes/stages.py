"""Resumable stages of a recipe: a finished stage leaves a marker and is skipped on a rerun.

A stage writes into its own output folder and, when it returns, `<workdir>/stages/<name>.json`
records its summary and the inputs it was run with. A run killed mid-stage has no marker: the
rerun clears that stage's partial output and runs it again (a training stage instead resumes
from its own checkpoint). A marker whose inputs differ from the current config is an error, not a
silent reuse of outputs made for another experiment.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any, Callable


class StageInterrupted(Exception):
  """A stage stopped early and cleanly (e.g. preempted): no marker, the rerun continues it."""

  def __init__(self, stage: str, summary: dict[str, Any]):
    super().__init__(f"stage {stage} stopped early: {summary}")
    self.stage, self.summary = stage, summary


class StageRunner:

  def __init__(self, workdir: str, log: Callable[[str], None] = print):
    self.marker_dir = os.path.join(workdir, "stages")
    self.log = log

  def marker(self, name: str) -> str:
    return os.path.join(self.marker_dir, f"{name}.json")

  def run(self, name: str, output: str, body: Callable[[], dict[str, Any]], *,
          inputs: dict[str, Any], clear_partial: bool = True) -> dict[str, Any]:
    """`body()`'s summary, or the recorded one (with skipped=True) if the stage finished before.

    `clear_partial=False` keeps what a killed attempt left in `output` (a trainer resumes it).
    """
    inputs = json.loads(json.dumps(inputs))  # the form it takes in the marker, for comparison
    if os.path.exists(self.marker(name)):
      with open(self.marker(name)) as f:
        done = json.load(f)
      if done["inputs"] != inputs:
        raise ValueError(f"stage {name} in {self.marker_dir} was run with {done['inputs']}, "
                         f"this config asks for {inputs}: use a new workdir or remove {output}"
                         f" and {self.marker(name)}")
      self.log(f"langshift: stage {name}: done before, skipped ({output})")
      return {**done["summary"], "skipped": True}
    if clear_partial and os.path.exists(output):
      shutil.rmtree(output)
    self.log(f"langshift: stage {name} -> {output}")
    summary = body()
    os.makedirs(self.marker_dir, exist_ok=True)
    tmp = self.marker(name) + ".tmp"
    with open(tmp, "w") as f:
      json.dump({"inputs": inputs, "summary": summary}, f, indent=2, default=_plain)
    os.replace(tmp, self.marker(name))  # a marker is whole or absent
    return {**summary, "skipped": False}


def _plain(value):
  """JSON for numpy scalars in summaries."""
  return value.item() if hasattr(value, "item") else str(value)
