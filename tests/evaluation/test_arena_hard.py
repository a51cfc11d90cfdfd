import json
import os
import re

import pytest

from langshift.evaluation import arena_hard
from langshift.evaluation.benchmarks.tables import BenchmarkFormatError
from langshift.evaluation.judge_runs import JudgeError
from langshift.rehearsal.fake_server import FakeOpenAIServer
from tests.evaluation.judge_protocol_fixtures import SilentJudge, write_jsonl

# Arena-Hard v0.1 question layout; the baseline's answers in the v2.0 layout, the model's in
# v0.1's: both are read.
QUESTIONS = [
    {"question_id": f"q{i}", "category": "arena-hard-v0.1", "turns": [{"content": text}]}
    for i, text in enumerate(["Plan a trip.", "Fix my code.", "Name a colour.", "biased", "Hi"])
]
BASELINE = ["quality=3", "quality=4", "quality=2", "quality=1", "quality=1"]
MODEL = ["quality=5", "quality=3", "quality=2", "quality=1", "garbled"]

_A = re.compile(r"Assistant A's Answer\|>\n(.*?)\n<\|The End", re.S)
_B = re.compile(r"Assistant B's Answer\|>\n(.*?)\n<\|The End", re.S)


class QualityJudge:
  """Labels by the answers' "quality=N" (a difference of 2 or more is "significantly better");
  always "[[A>B]]" on the question "biased" (position bias); no label when an answer is garbled."""

  def __init__(self):
    self.requests = []

  def chat(self, conversations, options):
    self.requests.append((list(conversations), options))
    out = []
    for system, user in conversations:
      assert system["role"] == "system" and "[[A>>B]]" in system["content"]
      a, b = _A.search(user["content"]).group(1), _B.search(user["content"]).group(1)
      if "garbled" in (a, b):
        out.append("I cannot tell.")
        continue
      if "biased" in user["content"]:
        out.append("My final verdict: [[A>B]]")
        continue
      diff = int(a.split("=")[1]) - int(b.split("=")[1])
      label = {2: "A>>B", 1: "A>B", 0: "A=B", -1: "B>A", -2: "B>>A"}[max(-2, min(2, diff))]
      out.append(f"My own answer first... [[{label}]]")
    return out


def v2_answer(uid, text, model="gpt-4-0314"):
  return {
      "uid": uid,
      "model": model,
      "messages": [
          {"role": "user", "content": "..."},
          {"role": "assistant", "content": {"answer": text}},
      ],
  }


@pytest.fixture
def files(tmp_path):
  d = str(tmp_path)
  ids = [q["question_id"] for q in QUESTIONS]
  return dict(
      questions=write_jsonl(f"{d}/question.jsonl", QUESTIONS),
      baseline=write_jsonl(
          f"{d}/model_answer/gpt-4-0314.jsonl", [v2_answer(i, t) for i, t in zip(ids, BASELINE)]
      ),
      answers=write_jsonl(
          f"{d}/model_answer/m.jsonl",
          [
              {
                  "question_id": i,
                  "model_id": "m",
                  "choices": [{"index": 0, "turns": [{"content": t, "token_len": 1}]}],
              }
              for i, t in zip(ids, MODEL)
          ],
      ),
      out=f"{d}/out",
  )


def test_parse_label():
  assert arena_hard.parse_label("... [[A>>B]]") == "A>>B"
  assert arena_hard.parse_label("verdict [[b>a]]") == "B>A"  # upper-cased, as Arena-Hard does
  assert arena_hard.parse_label("first [[A>B]], on reflection [[A=B]]") == "A=B"  # the last
  assert arena_hard.parse_label("fallback [B>>A]") == "B>>A"
  assert arena_hard.parse_label("[[A]]") is None  # MT-Bench's pairwise label is not one here
  assert arena_hard.parse_label("no verdict") is None


def test_win_rate_against_hand_computed_battles(files):
  judge = QualityJudge()
  inputs = arena_hard.read_inputs(files["questions"], files["baseline"], files["answers"])
  metrics = arena_hard.run(
      inputs, judge=judge, judge_name="fake", output_dir=files["out"], judge_batch_size=16
  )
  # The model's battles (game 2 as labelled, game 1 mirrored; a strong verdict is 3 battles):
  # q0 5 vs 3: B>>A, A>>B -> six wins; q1 3 vs 4: A>B, B>A -> two losses; q2: two ties;
  # q3 position bias (A>B both games) -> a loss and a win; q4: unparsed, left out.
  assert metrics["arena_hard/win_rate"] == pytest.approx(100 * 8 / 12)
  assert metrics["arena_hard/judged_questions"] == 4
  assert metrics["arena_hard/unparsed_games"] == 2
  shares = {k: metrics[f"arena_hard/{k}_share"] for k in ("strong_win", "win", "tie", "loss")}
  assert shares == pytest.approx({"strong_win": 2 / 8, "win": 1 / 8, "tie": 2 / 8, "loss": 3 / 8})
  assert metrics["arena_hard/strong_loss_share"] == 0.0
  # Both orders in one batch: game 1 shows the baseline as A, game 2 the model.
  ((conversations, options),) = judge.requests
  assert options.temperature == 0.0 and len(conversations) == 10
  assert "A's Answer|>\nquality=3\n" in conversations[0][1]["content"]
  assert "A's Answer|>\nquality=5\n" in conversations[5][1]["content"]
  with open(os.path.join(files["out"], "judgments.jsonl")) as f:
    first = json.loads(f.readline())
  assert [g["label"] for g in first["games"]] == ["B>>A", "A>>B"]
  with open(os.path.join(files["out"], "metrics.json")) as f:
    assert json.load(f)["arena_hard/win_rate"] == pytest.approx(100 * 8 / 12)


def test_the_model_answers_greedily_when_no_answers_are_given(files):
  class Model:

    def chat(self, conversations, options):
      assert options.temperature == 0.0
      return ["quality=3"] * len(conversations)

  inputs = arena_hard.read_inputs(files["questions"], files["baseline"])
  metrics = arena_hard.run(
      inputs, judge=QualityJudge(), judge_name="fake", output_dir=files["out"], model=Model()
  )
  # Against 3, 4, 2, 1, 1: tie, loss+loss, win+win, loss+win (bias), strong win x2 (3 vs 1).
  assert metrics["arena_hard/win_rate"] == pytest.approx(100 * (1 + 0 + 2 + 1 + 6) / 14)
  assert (
      arena_hard.read_inputs(
          files["questions"], files["baseline"], os.path.join(files["out"], "answers.jsonl")
      ).answers
      == ["quality=3"] * 5
  )


def test_bad_files_and_a_judge_without_labels_fail_in_one_line(files, tmp_path):
  short = write_jsonl(f"{tmp_path}/short.jsonl", [v2_answer("q0", "x")])
  with pytest.raises(
      BenchmarkFormatError, match=r"short.jsonl: baseline answers: no answer to question 'q1'"
  ):
    arena_hard.read_inputs(files["questions"], short)
  mt_style = write_jsonl(f"{tmp_path}/q.jsonl", [{"question_id": 1, "category": "x", "text": "?"}])
  with pytest.raises(BenchmarkFormatError, match=r"q.jsonl line 1: missing field 'turns'"):
    arena_hard.read_inputs(mt_style, files["baseline"])
  prompt = f"{tmp_path}/prompt.json"
  with open(prompt, "w") as f:
    json.dump({"system_prompt": "judge", "prompt_template": "{question} {answer_a} {answer_b}"}, f)
  with pytest.raises(BenchmarkFormatError, match=r"prompt.json: prompt_template has placeholders"):
    arena_hard.read_inputs(files["questions"], files["baseline"], judge_prompt_path=prompt)

  os.makedirs(files["out"])
  with open(os.path.join(files["out"], "metrics.json"), "w") as f:
    json.dump({"mt_bench/score": 6.2}, f)
  inputs = arena_hard.read_inputs(files["questions"], files["baseline"], files["answers"])
  with pytest.raises(JudgeError, match=r"^judge silent: none of its first 10 judgments"):
    arena_hard.run(
        inputs,
        judge=SilentJudge(),
        judge_name="silent",
        output_dir=files["out"],
        judge_batch_size=16,
    )
  unlabelled = _unlabelled_prompt(tmp_path)
  with FakeOpenAIServer() as server:  # a prompt that lists no labels: answered without one
    rc = arena_hard.main(
        [
            f"--questions={files['questions']}",
            f"--baseline={files['baseline']}",
            f"--answers={files['answers']}",
            f"--judge_prompt={unlabelled}",
            f"--judge_base_url={server.url}",
            "--judge_model=judge",
            f"--output_dir={files['out']}",
        ]
    )
  assert rc == 1
  with open(os.path.join(files["out"], "metrics.json")) as f:
    assert json.load(f) == {"mt_bench/score": 6.2}


def _unlabelled_prompt(tmp_path) -> str:
  path = f"{tmp_path}/unlabelled.json"
  template = "{QUESTION}\nA: {ANSWER_A}\nB: {ANSWER_B}"
  with open(path, "w") as f:
    json.dump({"system_prompt": "Say which answer is better.", "prompt_template": template}, f)
  return path


def test_cli_with_the_rehearsal_server_as_judge(files):
  """The rehearsal's fake server reads Arena-Hard's labels from the system prompt and names the
  longer answer: every game parses, and the model wins where its answer is the longer one."""
  with FakeOpenAIServer() as server:
    rc = arena_hard.main(
        [
            f"--questions={files['questions']}",
            f"--baseline={files['baseline']}",
            f"--answers={files['answers']}",
            f"--judge_base_url={server.url}",
            "--judge_model=judge",
            f"--output_dir={files['out']}",
        ]
    )
  assert rc == 0
  with open(os.path.join(files["out"], "metrics.json")) as f:
    metrics = json.load(f)
  assert metrics["arena_hard/unparsed_games"] == 0
  assert metrics["arena_hard/judged_questions"] > 0


def test_cli_prints_one_line_naming_the_judge(files, capsys, tmp_path):
  with FakeOpenAIServer() as server:
    arena_hard.main(
        [
            f"--questions={files['questions']}",
            f"--baseline={files['baseline']}",
            f"--answers={files['answers']}",
            f"--judge_prompt={_unlabelled_prompt(tmp_path)}",
            f"--judge_base_url={server.url}",
            "--judge_model=judge",
            f"--output_dir={files['out']}",
        ]
    )
    url = server.url
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and err.startswith(f"arena_hard: judge judge@{url}: ")
