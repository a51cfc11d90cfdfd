"""Resumable recipe stages: skip when finished, redo when killed, refuse a changed config."""

import dataclasses
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
  # The stage's own peak RSS joins its summary (langshift/memory.py) and its marker.
  assert first.pop("peak_rss_gib") > 0
  assert first == {"value": 1, "skipped": False}
  assert again.pop("peak_rss_gib") > 0
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


class _FakeHosts:
  """jax.process_index/process_count and the barrier of one host of a two-host job."""

  def __init__(self, monkeypatch, index):
    from langshift.recipes import stages

    self.barriers = []
    monkeypatch.setattr(stages.jax, "process_count", lambda: 2)
    monkeypatch.setattr(stages.jax, "process_index", lambda: index)
    monkeypatch.setattr(stages.multihost_utils, "sync_global_devices", self.barriers.append)
    # The job's workdir lock is agreed with a broadcast from process 0: here process 0 took it.
    monkeypatch.setattr(
        stages.multihost_utils, "broadcast_one_to_all", lambda tree, is_source=None: tree
    )


def test_host_stage_runs_on_process_zero_then_meets_the_others(tmp_path, monkeypatch):
  hosts = _FakeHosts(monkeypatch, index=0)
  runner, calls, out = StageRunner(str(tmp_path), log=lambda _: None), [], str(tmp_path / "a")
  summary = runner.run("a", out, _body(out, calls), inputs={})
  assert summary.pop("peak_rss_gib") > 0 and summary == {"value": 1, "skipped": False}
  assert calls == [out] and hosts.barriers == ["langshift stage a"]
  assert os.path.exists(runner.marker("a"))


def test_other_processes_wait_and_read_process_zeros_marker(tmp_path, monkeypatch):
  out = str(tmp_path / "a")
  StageRunner(str(tmp_path)).run("a", out, _body(out, [], value=7), inputs={"x": 1})
  hosts = _FakeHosts(monkeypatch, index=1)
  runner, calls = StageRunner(str(tmp_path), log=pytest.fail), []
  summary = runner.run("a", out, _body(out, calls), inputs={"x": 1})
  assert calls == [] and hosts.barriers == ["langshift stage a"]
  assert summary["value"] == 7


def test_other_processes_fail_when_process_zero_failed(tmp_path, monkeypatch):
  hosts = _FakeHosts(monkeypatch, index=0)
  runner, out = StageRunner(str(tmp_path), log=lambda _: None), str(tmp_path / "a")

  def broken():
    raise OSError("/models/base: no weights")

  with pytest.raises(OSError, match="no weights"):
    runner.run("a", out, broken, inputs={})
  assert hosts.barriers == ["langshift stage a"]  # met the others before raising
  assert "no weights" in open(runner.failure("a")).read()
  _FakeHosts(monkeypatch, index=1)
  with pytest.raises(RuntimeError, match=r"stage a failed on process 0; its traceback is in"):
    StageRunner(str(tmp_path)).run("a", out, pytest.fail, inputs={})


def test_missing_marker_after_the_barrier_names_the_shared_filesystem(tmp_path, monkeypatch):
  _FakeHosts(monkeypatch, index=1)
  with pytest.raises(RuntimeError, match="filesystem every host shares"):
    StageRunner(str(tmp_path)).run("a", str(tmp_path / "a"), pytest.fail, inputs={})


def test_collective_stage_runs_everywhere_and_only_process_zero_writes(tmp_path, monkeypatch):
  hosts = _FakeHosts(monkeypatch, index=1)
  runner, calls, out = StageRunner(str(tmp_path), log=pytest.fail), [], str(tmp_path / "a")
  runner.run("a", out, _body(out, calls), inputs={}, collective=True, clear_partial=False)
  assert calls == [out] and hosts.barriers == []
  assert not os.path.exists(runner.marker("a"))


@pytest.mark.parametrize(
    "key,value",
    [
        ("propagation", "procrustes"),
        ("propagation_products", "float16"),
        ("tokenizer_variant", "wordpiece"),
        ("init", "zeros"),
    ],
)
def test_bad_lep_setting_is_a_one_line_error_naming_it(key, value, tmp_path):
  from langshift import config_lib
  from langshift.recipes import lep
  from langshift.recipes.recipe import run_recipe
  from langshift.train.config import base_config

  config = config_lib.apply_overrides(base_config(), lep.RECIPE.required_settings)
  config.recipe = "lep"
  config.lep = lep.lep_config()
  config.lep.update(base=str(tmp_path), instruct=str(tmp_path))
  config.lep[key] = value
  with pytest.raises(ValueError, match=rf"^config\.lep\.{key}='{value}'; expected one of"):
    run_recipe(lep.RECIPE, config, str(tmp_path / "work"))
  assert not (tmp_path / "work").exists()  # nothing started


_TOY_STAGES = {"prepare": "prepared", "rewrite": "rewritten", "train": "trained"}


def _toy_declaration(calls, logs=None):
  """A recipe of three stages in the shape of the real ones; `toy.rewrite=False` leaves one out."""
  import ml_collections

  from langshift.recipes.recipe import Recipe, Stage

  def body(name):
    def run(ctx):
      return _body(ctx.paths[name], calls)()

    return run

  return Recipe(
      name="toy",
      title="toy recipe",
      section="toy",
      section_config=lambda: ml_collections.ConfigDict(dict(rewrite=True)),
      check=lambda config: None,
      stages=tuple(
          Stage(
              name,
              folder,
              body(name),
              reads=(f"toy.{name}",) if name == "rewrite" else (),
              when=(lambda config: config.toy.rewrite) if name == "rewrite" else None,
          )
          for name, folder in _TOY_STAGES.items()
      ),
      export=lambda ctx: ctx.paths["train"],
  )


def _toy_recipe(config, workdir, *, calls, rewrite=True, logs=None):
  from langshift.recipes.recipe import run_recipe

  with config.unlocked():
    config.toy = dict(rewrite=rewrite)
  log = logs.append if logs is not None else (lambda _: None)
  return run_recipe(_toy_declaration(calls), config, workdir, log=log)


def _stop_config(stop_after):
  from langshift.train.config import base_config

  config = base_config()
  config.stop_after = stop_after
  return config


def test_stop_after_ends_the_recipe_after_that_stage_and_a_rerun_continues(tmp_path):
  work, calls = str(tmp_path), []
  result = _toy_recipe(_stop_config("rewrite"), work, calls=calls)
  assert result["status"] == "stopped" and result["stopped_after"] == "rewrite"
  assert list(result["stages"]) == ["prepare", "rewrite"] and result["export"] is None
  assert calls == [os.path.join(work, "prepared"), os.path.join(work, "rewritten")]
  assert not os.path.exists(os.path.join(work, "trained"))
  # Stopping after a stage that is already finished stops there again, running nothing.
  assert _toy_recipe(_stop_config("prepare"), work, calls=calls)["stopped_after"] == "prepare"
  assert len(calls) == 2
  # Without it, the finished stages are skipped (their fingerprints leave stop_after out).
  result = _toy_recipe(_stop_config(""), work, calls=calls)
  assert result["status"] == "done"
  assert [result["stages"][s]["skipped"] for s in _TOY_STAGES] == [True, True, False]
  assert calls[2:] == [os.path.join(work, "trained")]


def test_stop_after_a_stage_this_config_leaves_out_stops_before_the_next(tmp_path):
  calls = []
  result = _toy_recipe(_stop_config("rewrite"), str(tmp_path), calls=calls, rewrite=False)
  assert result["status"] == "stopped" and list(result["stages"]) == ["prepare"]
  assert calls == [str(tmp_path / "prepared")]  # train did not start


def test_stop_after_an_unknown_stage_is_a_one_line_error_before_any_work(tmp_path):
  with pytest.raises(
      ValueError,
      match=r"^config\.stop_after='rewrit'; expected one of \('prepare', 'rewrite', 'train'\)$",
  ):
    _toy_recipe(_stop_config("rewrit"), str(tmp_path / "work"), calls=[])
  assert not (tmp_path / "work").exists()
  from langshift.recipes.run import run_experiment

  with pytest.raises(
      ValueError, match=r"^config\.stop_after='train'; expected empty: recipe 'cpt'"
  ):
    run_experiment(_stop_config("train"), str(tmp_path / "cpt"))
  assert not (tmp_path / "cpt").exists()


def test_the_runner_logs_each_stage_and_returns_the_result(tmp_path):
  logs, calls = [], []
  result = _toy_recipe(_stop_config(""), str(tmp_path), calls=calls, logs=logs)
  assert result["status"] == "done" and result["export"] == str(tmp_path / "trained")
  stage_lines = [line for line in logs if line.startswith("langshift: stage ") and "->" not in line]
  # One line per stage: its summary's numbers (the stage's own peak RSS among them).
  assert [line.split(", peak_rss_gib=")[0] for line in stage_lines] == [
      f"langshift: stage {name}: value=1" for name in _TOY_STAGES
  ]
  assert logs[-1] == f"langshift: toy recipe done; model: {tmp_path / 'trained'}"


def test_a_preempted_stage_makes_the_run_preempted_and_the_rerun_continues(tmp_path):
  from langshift.recipes.recipe import Stage, run_recipe

  calls, logs = [], []
  declaration = _toy_declaration(calls)

  def preempted(ctx):
    os.makedirs(ctx.paths["train"], exist_ok=True)
    raise StageInterrupted("train", {"step": 3})

  stopping = dataclasses.replace(
      declaration,
      stages=(*declaration.stages[:2], Stage("train", "trained", preempted, trains="")),
  )
  config = _stop_config("")
  with config.unlocked():
    config.toy = dict(rewrite=True)
  result = run_recipe(stopping, config, str(tmp_path), log=logs.append)
  assert result == {
      "status": "preempted",
      "stages": {**result["stages"], "train": {"step": 3}},
      "export": None,
  }
  assert list(result["stages"]) == ["prepare", "rewrite", "train"]
  assert logs[-1] == (
      "langshift: toy recipe stopped during stage train; rerun the same command to continue"
  )
  again = run_recipe(declaration, config, str(tmp_path), log=lambda _: None)
  assert again["status"] == "done" and again["stages"]["prepare"]["skipped"]


def test_a_stage_that_trains_must_declare_it(tmp_path):
  from langshift.recipes import training
  from langshift.recipes.recipe import Stage, run_recipe

  declaration = _toy_declaration([])

  def trains(ctx):
    return training.train_stage("prepare", ctx.config, ctx.paths["prepare"])

  undeclared = dataclasses.replace(declaration, stages=(Stage("prepare", "prepared", trains),))
  config = _stop_config("")
  with config.unlocked():
    config.toy = dict(rewrite=True)
  with pytest.raises(ValueError, match=r"^stage prepare trains but does not declare it"):
    run_recipe(undeclared, config, str(tmp_path), log=lambda _: None)
