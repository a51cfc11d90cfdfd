import json
import os

import pytest

from langshift.evaluation import mt_bench
from langshift.evaluation.benchmarks.tables import BenchmarkFormatError
from langshift.evaluation.judge_runs import JudgeError
from langshift.rehearsal.fake_server import FakeOpenAIServer
from tests.evaluation.judge_protocol_fixtures import (
    JUDGE_PROMPTS,
    RatingJudge,
    SilentJudge,
    fastchat_answer,
    write_jsonl,
)

QUESTIONS = [
    {"question_id": 81, "category": "writing", "turns": ["Write a poem.", "Shorter."]},
    {"question_id": 111, "category": "math", "turns": ["2+2?", "And 3+3?"]},
    {"question_id": 121, "category": "coding", "turns": ["Sort a list.", "In place."]},
    {"question_id": 151, "category": "humanities", "turns": ["Who was Kant?"]},
]
# The fake judge rates the graded answer's "score=N"; "garbled" gets no rating; 11 is off the
# 1-10 scale (unparsed as well).
ANSWERS = {
    81: ["score=8", "score=6"],
    111: ["score=4", "score=10"],
    121: ["garbled", "score=3"],
    151: ["score=11"],
}
REFERENCES = {111: ["ref score=1", "ref score=1"], 121: ["ref score=2", "ref score=2"]}


@pytest.fixture
def files(tmp_path):
  d = str(tmp_path)
  return dict(
      questions=write_jsonl(f"{d}/question.jsonl", QUESTIONS),
      prompts=write_jsonl(f"{d}/judge_prompts.jsonl", JUDGE_PROMPTS),
      references=write_jsonl(
          f"{d}/reference_answer/gpt-4.jsonl",
          [fastchat_answer(q, t, "gpt-4") for q, t in REFERENCES.items()],
      ),
      answers=write_jsonl(
          f"{d}/model_answer/m.jsonl", [fastchat_answer(q, t) for q, t in ANSWERS.items()]
      ),
      out=f"{d}/out",
  )


def _inputs(files):
  return mt_bench.read_inputs(
      files["questions"], files["prompts"], files["references"], files["answers"]
  )


def test_parse_rating_first_double_bracket_then_single():
  assert mt_bench.parse_rating("Rating: [[7]] and later [[3]]") == 7.0
  assert mt_bench.parse_rating("Rating: [6.5]") == 6.5
  assert mt_bench.parse_rating("[[2]] beats [9]") == 2.0
  assert mt_bench.parse_rating("no rating") is None
  assert mt_bench.parse_rating("[[0]]") is None and mt_bench.parse_rating("[[11]]") is None


def test_scores_against_hand_computed_values(files):
  judge = RatingJudge()
  metrics = mt_bench.run(_inputs(files), judge=judge, judge_name="fake", output_dir=files["out"])
  # Parsed: turn 1 -> 8 (writing), 4 (math); turn 2 -> 6, 10, 3. Unparsed: coding turn 1
  # ("garbled"), humanities turn 1 (11 is off the scale): counted, never scored.
  assert metrics["mt_bench/turn1"] == pytest.approx(6.0)
  assert metrics["mt_bench/turn2"] == pytest.approx(19 / 3)
  assert metrics["mt_bench/score"] == pytest.approx(31 / 5)
  assert metrics["mt_bench/judged"] == 5 and metrics["mt_bench/unparsed"] == 2
  assert metrics["mt_bench/category/writing"] == pytest.approx(7.0)
  assert metrics["mt_bench/category/math"] == pytest.approx(7.0)
  assert metrics["mt_bench/category/coding"] == pytest.approx(3.0)
  assert "mt_bench/category/humanities" not in metrics
  with open(os.path.join(files["out"], "metrics.json")) as f:
    assert json.load(f) == pytest.approx(metrics, nan_ok=True)
  with open(os.path.join(files["out"], "judgments.jsonl")) as f:
    judgments = [json.loads(line) for line in f]
  assert [(j["question_id"], j["turn"], j["prompt"], j["rating"]) for j in judgments] == [
      ("81", 1, "single-v1", 8.0),
      ("81", 2, "single-v1-multi-turn", 6.0),
      ("111", 1, "single-math-v1", 4.0),
      ("111", 2, "single-math-v1-multi-turn", 10.0),
      ("121", 1, "single-math-v1", None),
      ("121", 2, "single-math-v1-multi-turn", 3.0),
      ("151", 1, "single-v1", None),
  ]
  # The judge gets each prompt's system text, the reference answers where the category needs
  # them, both turns for turn 2, and judges greedily.
  ((conversations, options),) = judge.requests
  assert options.temperature == 0.0 and options.max_new_tokens == mt_bench.JUDGE_MAX_NEW_TOKENS
  assert conversations[0][0] == {"role": "system", "content": "You are a helpful assistant."}
  assert "REF: ref score=1" in conversations[2][1]["content"]
  assert "REF2: ref score=1" in conversations[3][1]["content"]
  assert "A1: score=8\nQ2: Shorter.\nA2: score=6" in conversations[1][1]["content"]


def test_the_model_answers_each_turn_after_its_own_first_answer(files):
  class EchoModel:

    def __init__(self):
      self.calls = []

    def chat(self, conversations, options):
      self.calls.append(([list(c) for c in conversations], options.temperature))
      return [f"score={len(c)}" for c in conversations]

  model = EchoModel()
  inputs = mt_bench.read_inputs(files["questions"], files["prompts"], files["references"])
  metrics = mt_bench.run(
      inputs, judge=RatingJudge(), judge_name="fake", output_dir=files["out"], model=model
  )
  # Turn 1 sees one message (score=1), turn 2 three (score=3); FastChat's temperatures per
  # category, requests with equal settings batched together.
  assert metrics["mt_bench/turn1"] == 1.0 and metrics["mt_bench/turn2"] == 3.0
  turn1 = {t: len(c) for c, t in model.calls[:3]}
  assert turn1 == {0.7: 1, 0.0: 2, 0.1: 1}
  second_turn_of_writing = next(c for c, t in model.calls[3:] if t == 0.7)[0]
  assert second_turn_of_writing == [
      {"role": "user", "content": "Write a poem."},
      {"role": "assistant", "content": "score=1"},
      {"role": "user", "content": "Shorter."},
  ]
  with open(os.path.join(files["out"], "answers.jsonl")) as f:
    first = json.loads(f.readline())
  assert first == fastchat_answer("81", ["score=1", "score=3"], "model")


def test_a_judge_that_never_rates_fails_naming_it_and_keeps_written_metrics(files):
  metrics_path = os.path.join(files["out"], "metrics.json")
  os.makedirs(files["out"])
  with open(metrics_path, "w") as f:
    json.dump({"arena_hard/win_rate": 41.5}, f)
  judge = SilentJudge()
  with pytest.raises(JudgeError) as e:
    mt_bench.run(
        _inputs(files),
        judge=judge,
        judge_name="judge-x@http://h/v1",
        output_dir=files["out"],
        judge_batch_size=2,
    )
  message = str(e.value)
  assert "\n" not in message and "judge-x@http://h/v1" in message and "[[rating]]" in message
  assert judge.calls == 1  # stopped at the first batch, not after every judgment
  with open(metrics_path) as f:
    assert json.load(f) == {"arena_hard/win_rate": 41.5}


def test_files_in_another_layout_are_one_line_errors_naming_the_file(files, tmp_path):
  arena_style = write_jsonl(
      f"{tmp_path}/judge_config.jsonl",
      [{"judge_model": "gpt-4", "regex_pattern": r"\[\[([AB<>=]+)\]\]"}],
  )
  with pytest.raises(BenchmarkFormatError, match=r"judge_config.jsonl line 1: .*'name'"):
    mt_bench.read_inputs(files["questions"], arena_style)
  no_single = write_jsonl(f"{tmp_path}/pairs.jsonl", JUDGE_PROMPTS[4:])
  with pytest.raises(BenchmarkFormatError, match="pairs.jsonl: no judge prompt named"):
    mt_bench.read_inputs(files["questions"], no_single)
  odd = dict(JUDGE_PROMPTS[0], prompt_template="{question} {answer} {rubric}")
  odd_prompts = write_jsonl(f"{tmp_path}/odd.jsonl", [odd, *JUDGE_PROMPTS[1:]])
  with pytest.raises(BenchmarkFormatError, match=r"odd.jsonl line 1: .*\['rubric'\]"):
    mt_bench.read_inputs(files["questions"], odd_prompts)
  questions = write_jsonl(f"{tmp_path}/q.jsonl", [{"id": 1, "text": "hi"}])
  with pytest.raises(BenchmarkFormatError, match="q.jsonl line 1: missing field 'question_id'"):
    mt_bench.read_inputs(questions, files["prompts"])
  answers = write_jsonl(f"{tmp_path}/a.jsonl", [fastchat_answer(81, ["only one"])])
  with pytest.raises(
      BenchmarkFormatError, match=r"a.jsonl: model answers: question '81' has 2 turns"
  ):
    mt_bench.read_inputs(files["questions"], files["prompts"], files["references"], answers)
  with pytest.raises(ValueError, match=r"question '111' \(math\) .* --references"):
    mt_bench.read_inputs(files["questions"], files["prompts"])


def test_cli_with_an_openai_compatible_judge(files):
  with FakeOpenAIServer() as server:  # rates every "[[rating]]" prompt [[8]]
    rc = mt_bench.main(
        [
            f"--questions={files['questions']}",
            f"--judge_prompts={files['prompts']}",
            f"--references={files['references']}",
            f"--answers={files['answers']}",
            f"--judge_base_url={server.url}",
            "--judge_model=judge",
            f"--output_dir={files['out']}",
        ]
    )
  assert rc == 0
  with open(os.path.join(files["out"], "metrics.json")) as f:
    metrics = json.load(f)
  # The fake server rates every prompt that asks for "[[rating]]", in its last message (the
  # turn-1 prompts here) or in its system text (the multi-turn ones, as FastChat's ask).
  assert metrics["mt_bench/score"] == 8.0 and metrics["mt_bench/turn1"] == 8.0
  assert metrics["mt_bench/turn2"] == 8.0
  assert metrics["mt_bench/judged"] == 7 and metrics["mt_bench/unparsed"] == 0
