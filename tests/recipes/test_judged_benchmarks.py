"""MT-Bench and Arena-Hard in the recipes' published settings: which inputs a user must give
once they ask for one, the files checked in their layouts before anything runs, and the runs on
the stage's models with their metrics tagged per model."""

import json
import os

import pytest

from langshift import rehearse as rehearse_lib
from langshift.evaluation.benchmarks.tables import BenchmarkFormatError
from langshift.recipes import judged_benchmarks, required_inputs
from langshift.rehearsal import judge_files
from langshift.rehearsal.fake_server import FakeOpenAIServer
from langshift.rehearsal.models import write_tiny_model

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _published(name):
  return rehearse_lib.load_experiment(os.path.join(REPO, "experiments", f"{name}.py"))[1]


@pytest.mark.parametrize(
    "name, section, benchmarks",
    [
        ("inscp_zh_tw", "inscp", ("mt_bench",)),
        ("noninstruct", "noninstruct.evaluate", ("mt_bench", "arena_hard")),
    ],
)
def test_a_benchmark_asked_for_names_its_other_files_and_its_judge(name, section, benchmarks):
  config = _published(name)
  where = config
  for part in section.split("."):
    where = where[part]
  assert judged_benchmarks.missing_inputs(where, section) == []  # not asked for: not run
  for benchmark in benchmarks:
    where[benchmark].questions = "/data/question.jsonl"
  missing = required_inputs.missing_inputs(config)
  expected = {"mt_bench": ["judge_prompts", "judge.base_url"]}
  expected["arena_hard"] = ["baseline", "judge.base_url"]
  for benchmark in benchmarks:
    for field in expected[benchmark]:
      assert f"{section}.{benchmark}.{field}" in missing, missing
  assert f"{section}.mt_bench.references" not in missing  # only math questions need them


def test_files_in_another_layout_are_one_line_naming_the_file(tmp_path):
  files = judge_files.write_mt_bench_files(str(tmp_path))
  section = _published("inscp_zh_tw").inscp
  section.mt_bench.update(files)
  section.mt_bench.judge.base_url = "http://127.0.0.1:9/v1"
  judged_benchmarks.check(section, "config.inscp")  # the rehearsal's files pass
  bad = tmp_path / "question.jsonl"
  bad.write_text(json.dumps({"question_id": 1, "category": "writing", "text": "hi"}) + "\n")
  section.mt_bench.questions = str(bad)
  with pytest.raises(BenchmarkFormatError, match=r"question.jsonl line 1: missing field 'turns'"):
    judged_benchmarks.check(section, "config.inscp")
  section.mt_bench.update(files, answer_max_new_tokens=0)
  with pytest.raises(ValueError, match=r"^config.inscp.mt_bench: answer_max_new_tokens=0"):
    judged_benchmarks.check(section, "config.inscp")


def test_run_grades_each_model_and_tags_its_metrics(tmp_path):
  """Two tiny models answer the rehearsal's MT-Bench and Arena-Hard files; the fake server rates
  every MT-Bench turn [[8]] (the multi-turn prompts ask in their system prompt) and labels every
  Arena-Hard game."""
  model = write_tiny_model("smollm2", str(tmp_path / "model"), chat=True)
  section = _published("noninstruct").noninstruct.evaluate
  section.mt_bench.update(judge_files.write_mt_bench_files(str(tmp_path / "files")))
  section.arena_hard.update(judge_files.write_arena_hard_files(str(tmp_path / "files")))
  for cfg in (section.mt_bench, section.arena_hard):
    cfg.answer_max_new_tokens = 4
  with FakeOpenAIServer() as server:
    for cfg in (section.mt_bench, section.arena_hard):
      cfg.judge.update(base_url=server.url, model="judge")
    metrics = judged_benchmarks.run(
        section, {"before": model, "after": model}, str(tmp_path / "out"), num_devices=1
    )
  for tag in ("before", "after"):
    assert metrics[f"{tag}/mt_bench/score"] == 8.0
    assert metrics[f"{tag}/mt_bench/turn2"] == 8.0
    assert metrics[f"{tag}/mt_bench/judged"] == 4 and metrics[f"{tag}/mt_bench/unparsed"] == 0
    assert metrics[f"{tag}/arena_hard/judged_questions"] == 2
    assert metrics[f"{tag}/arena_hard/unparsed_games"] == 0
    assert os.path.exists(tmp_path / "out" / "mt_bench" / tag / "judgments.jsonl")
    assert os.path.exists(tmp_path / "out" / "arena_hard" / tag / "answers.jsonl")
