"""Resumable recipe stages: skip when finished, redo when killed, refuse a changed config."""

import os

import pytest

from langshift.recipes.stages import StageInterrupted, StageRunner


def _body(output, calls, value=1):
  def run():
    calls.append(output)
    os.makedirs(output, exist_ok=True)
    with open(os.path.join(output, "part"), "w") as f:
      f.write(str(value))
    return {"value": value}
  return run


def test_finished_stage_is_skipped_and_returns_its_summary(tmp_path):
  runner, calls, out = StageRunner(str(tmp_path), log=lambda _: None), [], str(tmp_path / "a")
  first = runner.run("a", out, _body(out, calls), inputs={"x": (1, 2)})
  again = runner.run("a", out, _body(out, calls), inputs={"x": (1, 2)})
  assert calls == [out]
  assert first == {"value": 1, "skipped": False}
  assert again == {"value": 1, "skipped": True}


def test_killed_stage_is_cleared_and_rerun(tmp_path):
  runner, calls, out = StageRunner(str(tmp_path), log=lambda _: None), [], str(tmp_path / "a")
  os.makedirs(out)
  with open(os.path.join(out, "stale"), "w") as f:
    f.write("partial output of a killed attempt")
  runner.run("a", out, _body(out, calls), inputs={})
  assert calls == [out] and sorted(os.listdir(out)) == ["part"]


def test_interrupted_stage_keeps_its_output_and_leaves_no_marker(tmp_path):
  runner, out = StageRunner(str(tmp_path), log=lambda _: None), str(tmp_path / "train")

  def preempted():
    os.makedirs(out, exist_ok=True)
    raise StageInterrupted("train", {"step": 3})

  with pytest.raises(StageInterrupted):
    runner.run("train", out, preempted, inputs={}, clear_partial=False)
  assert not os.path.exists(runner.marker("train"))
  calls = []
  runner.run("train", out, _body(out, calls), inputs={}, clear_partial=False)
  assert calls == [out]


def test_changed_inputs_are_an_error_not_a_silent_reuse(tmp_path):
  runner, out = StageRunner(str(tmp_path), log=lambda _: None), str(tmp_path / "a")
  runner.run("a", out, _body(out, []), inputs={"variant": "extended"})
  with pytest.raises(ValueError, match="variant"):
    runner.run("a", out, _body(out, []), inputs={"variant": "bpe"})
