"""The rehearsal of every experiment's published setting (`python -m langshift.rehearse`): its
default config, every stage, on tiny random models of its models' kinds, to an evaluation whose
figures reach the sweep table; and the checks that keep a rehearsal honest (no drift from the
published config) and a published setting's missing inputs named together, before anything."""

import dataclasses
import glob
import json
import os
import re
import subprocess
import sys
import urllib.request

import pytest

from langshift import config_lib, run_result
from langshift import rehearse as rehearse_lib
from langshift.recipes import required_inputs
from langshift.recipes.run import run_experiment
from langshift.rehearsal import config_check, fake_server, inputs
from langshift.sweep_results import cell_values

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@dataclasses.dataclass(frozen=True)
class Expect:
  stages: tuple[str, ...]  # stages/<name>.json markers and their folders (the recipe's stages)
  # The final evaluation's figures in cell_values: the paper's headline metric where local files
  # give it, otherwise a proxy (each a regex that some key must match).
  figures: tuple[str, ...]
  export: str  # the exported model, under the workdir
  judged: bool = False  # a server judge runs: its unparsed verdicts are reported, and 0


EXPERIMENTS = {
    # Held-out perplexity of the continued model.
    "demo": Expect((), (r"^eval/perplexity$",), "hf"),
    # Headline: the response-language rate; TMMLU+ and the judge before/after in `evaluate`.
    "inscp_zh_tw": Expect(
        ("score", "cpt", "evaluate"),
        (
            r"^cpt/align/language_match$",
            r"^evaluate:after/tmmluplus/micro_avg$",
            r"^evaluate:judge/zh-Hant/score$",
            # The paper's lm-eval benchmarks (local stand-ins of the same names) before and
            # after CPT, and MT-Bench of both models.
            r"^cpt:eval/truthfulqa_mc2/acc_before$",
            r"^cpt:eval/mmlu/acc_after$",
            r"^evaluate:before/mt_bench/score$",
            r"^evaluate:after/mt_bench/turn2$",
        ),
        "cpt/hf",
        judged=True,
    ),
    # The evaluate stage's per-task scores and micro-average, and Darumeru as the paper scores it:
    # PARus in both orders (its score exists only with the swapped twin), the group averages.
    "lep_ru": Expect(
        ("tokenizer", "init", "cpt", "propagate", "evaluate"),
        (
            r"^evaluate:eval/micro_avg$",
            r"^evaluate:darumeru/parus/score$",
            r"^evaluate:darumeru/DaruMERA$",
            r"^evaluate:darumeru/micro_avg$",
        ),
        "lep_instruct",
    ),
    # Harmlessness / helpfulness of the student after vs before CPT (the Arabic benchmarks need
    # their published files: not local); held-out perplexity as well.
    "native_align_ar": Expect(
        ("dedup", "seed", "filter", "worker_sft", "rewrite", "cpt", "evaluate"),
        (
            r"^evaluate:judge_harmless/score$",
            r"^evaluate:judge_helpful/score$",
            r"^cpt/eval/perplexity$",
        ),
        "cpt/hf",
        judged=True,
    ),
    # The pairwise judge's score of the tuned student against the untuned one.
    "noninstruct": Expect(
        ("split", "teacher", "pairs", "sft", "export", "evaluate"),
        (
            r"^evaluate:judge/score$",
            r"^evaluate:eval/language_match_after$",
            # The paper's Open LLM suite at its shots (stand-ins), MT-Bench and Arena-Hard.
            r"^evaluate:eval/arc_challenge/acc_after$",
            r"^evaluate:eval/gsm8k/exact_match_before$",
            r"^evaluate:mt_bench/score$",
            r"^evaluate:arena_hard/win_rate$",
        ),
        "sft/hf",
        judged=True,
    ),
    # Proxy: the response-language match per language (the IF score needs a monolingually tuned
    # reference per language, a run of its own).
    "pinch": Expect(
        ("mixture", "sft", "evaluate"),
        (r"^evaluate:responses/language_match$", r"^evaluate:responses/language_match/ru$"),
        "sft/hf",
    ),
}


def _spec(name):
  return os.path.join(REPO, "experiments", f"{name}.py")


def _has_chat_template(directory):
  if os.path.exists(os.path.join(directory, "chat_template.jinja")):
    return True
  with open(os.path.join(directory, "tokenizer_config.json")) as f:
    return bool(json.load(f).get("chat_template"))


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_rehearsal(name, tmp_path):
  expect, workdir = EXPERIMENTS[name], str(tmp_path / name)
  result = rehearse_lib.rehearse(_spec(name), workdir)
  assert run_result.status_of(result) == "done", result
  for stage in expect.stages:
    assert os.path.exists(os.path.join(workdir, "stages", f"{stage}.json")), stage
  values = cell_values(workdir)
  for pattern in expect.figures:
    assert any(re.search(pattern, k) for k in values), (pattern, sorted(values))
  export = os.path.join(workdir, expect.export)
  assert os.path.exists(os.path.join(export, "config.json"))
  assert _has_chat_template(export), f"{export}: the exported tokenizer has no chat template"
  unparsed = {
      k: v
      for k, v in values.items()
      if k.endswith(("/unparsed_verdicts", "mt_bench/unparsed", "arena_hard/unparsed_games"))
  }
  if expect.judged:
    assert unparsed, f"no <prefix>/unparsed_verdicts in {sorted(values)}"
  assert all(v == 0 for v in unparsed.values()), unparsed


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_published_setting_names_every_missing_input_before_anything(name, tmp_path):
  """With the paths and endpoints the rehearsal fills left empty, the default config fails on
  one line naming each required one, and the workdir is not created."""
  module, published = rehearse_lib.load_experiment(_spec(name))
  filled = inputs.write_inputs(
      config_lib.apply_overrides(published, module.REHEARSAL_SIZES),
      str(tmp_path / "inputs"),
      "http://127.0.0.1:9/v1",
  )
  empty = config_lib.apply_overrides(published, {k: "" for k in filled.overrides})
  assert filled.required
  assert sorted(required_inputs.missing_inputs(empty)) == sorted(filled.required)
  workdir = tmp_path / "workdir"
  with pytest.raises(required_inputs.MissingInputsError) as e:
    run_experiment(empty, str(workdir))
  message = str(e.value)
  assert "\n" not in message
  assert all(f"config.{k}" in message for k in filled.required), message
  assert not workdir.exists()
  # The rehearsal's own inputs fill every one of them.
  full = config_lib.apply_overrides(published, {**module.REHEARSAL_SIZES, **filled.overrides})
  assert required_inputs.missing_inputs(full) == []


def test_refused_run_leaves_no_trace_in_the_workdir(tmp_path):
  """The command line: one line naming every missing input, exit 1, no workdir, no error log."""
  workdir = tmp_path / "pinch"
  run = subprocess.run(
      [
          sys.executable,
          "-m",
          "langshift.main",
          f"--config={_spec('pinch')}",
          f"--workdir={workdir}",
      ],
      capture_output=True,
      text=True,
      cwd=REPO,
      check=False,
  )
  assert run.returncode == 1
  error = [line for line in run.stderr.splitlines() if line.startswith("langshift: error:")]
  assert len(error) == 1
  assert "config.init_from_hf" in error[0] and "config.pinch.parallel_set" in error[0]
  assert not workdir.exists()


def test_config_check_refuses_drift_and_lists_what_differs():
  _, published = rehearse_lib.load_experiment(_spec("pinch"))
  sizes = {"train.steps": 2, "pinch.budget": 24}
  paths = {"init_from_hf": "/m", "pinch.parallel_set": "/s"}
  rehearsal = config_lib.apply_overrides(published, {**sizes, **paths})
  diff = config_check.differences(published, rehearsal, sizes=sizes, paths=paths, endpoints=())
  assert diff == {
      "size": ["pinch.budget", "train.steps"],
      "path": ["init_from_hf", "pinch.parallel_set"],
      "endpoint": [],
      "stand-in": [],
  }
  drifted = config_lib.apply_overrides(rehearsal, {"optimizer.learning_rate": 1e-3})
  with pytest.raises(ValueError, match=r"drifts .* at optimizer.learning_rate: 1e-05 -> 0.001"):
    config_check.differences(published, drifted, sizes=sizes, paths=paths, endpoints=())
  # A behavioural setting cannot be declared a size, nor a size be anything but a number.
  with pytest.raises(ValueError, match=r"'optimizer.learning_rate'\]: not a size"):
    config_check.check_sizes({"optimizer.learning_rate": 1e-3}, published)
  with pytest.raises(ValueError, match=r"'pinch.evaluate.judge.max_new_tokens'\]: not a size"):
    config_check.check_sizes({"pinch.evaluate.judge.max_new_tokens": 16}, published)
  with pytest.raises(ValueError, match=r"'train.steps'\]=.*a rehearsal size is a number"):
    config_check.check_sizes({"train.steps": "2"}, published)


def test_every_experiment_declares_valid_rehearsal_sizes():
  for path in sorted(glob.glob(os.path.join(REPO, "experiments", "*.py"))):
    module, published = rehearse_lib.load_experiment(path)
    config_check.check_sizes(module.REHEARSAL_SIZES, published)
    config_check.check_standins(getattr(module, "REHEARSAL_STANDINS", {}), published, path)


def _ask(url, content, max_tokens):
  body = {"messages": [{"role": "user", "content": content}], "max_tokens": max_tokens}
  request = urllib.request.Request(
      url + "/chat/completions",
      json.dumps(body).encode(),
      {"Content-Type": "application/json"},
  )
  with urllib.request.urlopen(request) as r:
    choice = json.load(r)["choices"][0]
  return choice["message"]["content"], choice["finish_reason"]


def test_fake_server_answers_each_role_within_its_token_budget():
  from langshift.evaluation.judge import JUDGE_PROMPT, parse_verdict  # pylint: disable=import-outside-toplevel

  judge = JUDGE_PROMPT.format(question="q", first="short", second="a longer answer")
  with fake_server.FakeOpenAIServer() as server:
    text, finish = _ask(server.url, judge, 512)
    assert finish == "stop" and parse_verdict(text) == "second"
    assert len(text.split()) > 10  # reasoning first
    text, finish = _ask(server.url, judge, 16)  # a judge cut at its budget loses its verdict
    assert finish == "length" and len(text.split()) == 16 and "[[" not in text
    text, _ = _ask(server.url, "Rate the answer; reply with [[rating]].", 512)
    assert text.endswith("[[8]]")
    text, _ = _ask(server.url, "Rewrite:\n<document>\nfirst second third\n</document>", 512)
    assert text == "second first third"
    text, _ = _ask(server.url, "Continue the following text.\n\nOne. Two. Three.", 512)
    assert text == "Two. Three."
