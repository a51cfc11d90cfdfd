"""Every recipe's judge gets its role's generation options: a budget that leaves room for the
reasoning the judge prompts ask for before the verdict (it was 16 new tokens for native alignment
and non-instructional FT, whose judge also never received its role's options), and the role's
temperature. The fake OpenAI server records each request's `max_tokens`."""

import os
import sys

import pytest
from generation.fake_openai_server import FakeOpenAI

from langshift.evaluation.judge import JUDGE_MAX_NEW_TOKENS
from langshift.recipes import judging
from langshift.recipes.native_alignment import evaluation as na_evaluation

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, REPO)
from experiments import native_align_ar, noninstruct  # noqa: E402


@pytest.fixture
def server():
  server = FakeOpenAI().start()
  yield server
  server.stop()


def _sampling(server):
  return [(body["max_tokens"], body["temperature"]) for _, body, _ in server.requests]


def test_non_instructional_judge_gets_its_roles_budget(server):
  config = noninstruct.get_config()
  role = config.noninstruct.evaluate.judge
  assert role.max_new_tokens == JUDGE_MAX_NEW_TOKENS >= 512  # the published setting
  role.base_url = server.url
  judging.make_judge(config, role)([("q", "a", "b"), ("q", "b", "a")])
  assert _sampling(server) == [(JUDGE_MAX_NEW_TOKENS, 0.0)] * 2
  # A role's own settings reach the server too.
  role.update(max_new_tokens=300, temperature=0.5)
  judging.make_judge(config, role)([("q", "a", "b")])
  assert _sampling(server)[-1] == (300, 0.5)


def test_native_alignment_judge_gets_its_roles_budget(server):
  config = native_align_ar.get_config()
  ev = config.native_align.evaluate
  assert ev.judge.max_new_tokens == JUDGE_MAX_NEW_TOKENS >= 512  # the published setting
  ev.judge.base_url = server.url
  metrics = na_evaluation.judge_students(config, ["q1", "q2"], ["a1", "a2"], ["b1", "b2"])
  # 2 prompts x 2 orders x 2 criteria, each with the role's budget.
  assert _sampling(server) == [(JUDGE_MAX_NEW_TOKENS, 0.0)] * 8
  assert metrics["judge_prompts"] == 2
  # The server echoes the prompt, whose last verdict form is "[[C]]" (a declared tie): parsed.
  for criterion in ("harmless", "helpful"):
    assert metrics[f"judge_{criterion}/judged_pairs"] == 2
    assert metrics[f"judge_{criterion}/unparsed_verdicts"] == 0
    assert metrics[f"judge_{criterion}/score"] == 50.0
