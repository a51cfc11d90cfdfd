"""The generation job with requests that fail: failures recorded, shards left in progress, retried
by the rerun; a down endpoint stops the job; ids key the outputs."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from fake_openai_server import FakeOpenAI, free_port

from langshift.generation.interface import GenerationOptions
from langshift.generation.job import (
    EndpointUnavailable,
    JobConfig,
    read_failures,
    read_outputs,
    run_generation_job,
)
from langshift.generation.openai_client import OpenAIGenerator
from langshift.generation.outcomes import GenerationFailure

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class FlakyBackend:
  """Answers chats; fails the requests whose text is in `failing` (as a server would, per item)."""

  name = "flaky-backend"

  def __init__(self, failing=()):
    self.failing, self.seen = set(failing), []

  def chat(self, conversations, options):
    raise AssertionError("the job must use chat_outcomes when the backend has it")

  def chat_outcomes(self, conversations, options):
    out = []
    for c in conversations:
      text = c[-1]["content"]
      self.seen.append(text)
      if text in self.failing:
        out.append(GenerationFailure("http://x/v1/chat/completions", "http", "too long", 400, 1))
      else:
        out.append(f"re: {text}")
    return out


def _write(path, texts, ids=None):
  with open(path, "w", encoding="utf-8") as f:
    for i, text in enumerate(texts):
      f.write(json.dumps({"id": ids[i] if ids else f"r{i}", "messages": [_user(text)]}) + "\n")


def _user(text):
  return {"role": "user", "content": text}


def test_failed_requests_are_recorded_and_only_they_are_retried_by_the_rerun(tmp_path):
  src, out = str(tmp_path / "in.jsonl"), str(tmp_path / "out")
  texts = [f"q{i}" for i in range(7)]
  _write(src, texts)
  cfg = JobConfig(shard_size=4, batch_size=3)
  first = FlakyBackend(failing={"q1", "q6"})
  result = run_generation_job(src, out, first, GenerationOptions(), cfg)
  assert (result.written, result.failed, result.incomplete_shards) == (5, 2, 2)
  assert sorted(os.listdir(out)) == [
      "failures-00000.jsonl",
      "failures-00001.jsonl",
      "part-00000.jsonl.inprogress",
      "part-00001.jsonl.inprogress",
  ]
  assert read_outputs(out) == []  # no shard is complete
  assert [r["id"] for r in read_outputs(out, include_incomplete=True)] == [
      "r0",
      "r2",
      "r3",
      "r4",
      "r5",
  ]
  failures = {f["id"]: f for f in read_failures(out)}
  assert sorted(failures) == ["r1", "r6"]
  assert failures["r1"]["attempts"] == 1 and failures["r1"]["runs_failed"] == 1
  assert "HTTP 400" in failures["r1"]["error"] and failures["r1"]["failure"]["status"] == 400

  # Still failing: recorded again, with the count of runs it failed in.
  again = FlakyBackend(failing={"q6"})
  result = run_generation_job(src, out, again, GenerationOptions(), cfg)
  assert (result.written, result.failed, result.incomplete_shards) == (1, 1, 1)
  assert again.seen == ["q1", "q6"]
  assert [f["runs_failed"] for f in read_failures(out)] == [2]

  last = FlakyBackend()
  assert run_generation_job(src, out, last, GenerationOptions(), cfg) == 1
  assert last.seen == ["q6"]
  assert sorted(os.listdir(out)) == ["part-00000.jsonl", "part-00001.jsonl"]
  records = read_outputs(out)
  assert [r["id"] for r in records] == [f"r{i}" for i in range(7)]  # back in input order
  assert all(r["completion"] == f"re: q{i}" for i, r in enumerate(records))
  assert {r["generator"] for r in records} == {"flaky-backend"}
  assert read_failures(out) == []


def test_down_endpoint_stops_the_job_and_the_rerun_completes_it(tmp_path):
  src, out = str(tmp_path / "in.jsonl"), str(tmp_path / "out")
  _write(src, [f"q{i}" for i in range(6)])
  port = free_port()
  url = f"http://127.0.0.1:{port}/v1"
  gen = OpenAIGenerator(url, "m", max_concurrency=2, max_retries=1, backoff_s=0.01, timeout_s=5)
  cfg = JobConfig(shard_size=4, batch_size=4)
  with pytest.raises(EndpointUnavailable) as raised:
    run_generation_job(src, out, gen, GenerationOptions(max_new_tokens=8), cfg)
  message = str(raised.value)
  assert "\n" not in message and url + "/chat/completions" in message and "connection" in message
  assert read_outputs(out, include_incomplete=True) == [] and read_failures(out) == []

  server = FakeOpenAI(port=port).start()
  try:
    result = run_generation_job(src, out, gen, GenerationOptions(max_new_tokens=8), cfg)
  finally:
    server.stop()
  assert (result.written, result.failed) == (6, 0)
  records = read_outputs(out)
  assert [r["completion"] for r in records] == [f"echo: q{i}" for i in range(6)]
  assert {r["generator"] for r in records} == {f"m@{url}"}
  assert len(server.requests) == 6


def test_invalid_requests_over_http_are_recorded_without_a_retry(tmp_path):
  src, out = str(tmp_path / "in.jsonl"), str(tmp_path / "out")
  bad = "status:500:internal_server_error:Requested tokens (9000) exceed context window of 2048"
  _write(src, ["a", bad, "b"])
  server = FakeOpenAI().start()
  try:
    gen = OpenAIGenerator(server.url, "m", max_retries=3, backoff_s=0.01, timeout_s=5)
    result = run_generation_job(
        src, out, gen, GenerationOptions(), JobConfig(batch_size=8, generator_name="expert")
    )
  finally:
    server.stop()
  assert (result.written, result.failed) == (2, 1)
  assert server.seen[bad] == 1
  [failure] = read_failures(out)
  assert failure["id"] == "r1" and failure["attempts"] == 1 and failure["generator"] == "expert"
  assert {r["generator"] for r in read_outputs(out, include_incomplete=True)} == {"expert"}


def test_a_batch_of_only_invalid_requests_is_recorded_not_taken_for_a_down_endpoint(tmp_path):
  src, out = str(tmp_path / "in.jsonl"), str(tmp_path / "out")
  _write(src, ["q0", "q1"])
  result = run_generation_job(
      src, out, FlakyBackend(failing={"q0", "q1"}), GenerationOptions(), JobConfig(batch_size=2)
  )
  assert (result.written, result.failed) == (0, 2)
  assert sorted(f["id"] for f in read_failures(out)) == ["r0", "r1"]


def test_records_without_an_id_or_with_a_repeated_id_are_refused_before_any_request(tmp_path):
  src, out = str(tmp_path / "in.jsonl"), str(tmp_path / "out")
  _write(src, ["a", "b", "c"], ids=["x", "y", "x"])
  backend = FlakyBackend()
  with pytest.raises(ValueError, match=r"in.jsonl:3: 'id' 'x' repeats line 1"):
    run_generation_job(src, out, backend, GenerationOptions(), JobConfig(shard_size=1))
  _write(src, ["a", "b"])
  with open(src, "a", encoding="utf-8") as f:
    f.write("\n" + json.dumps({"messages": [_user("c")]}) + "\n")
  with pytest.raises(ValueError, match=r"in.jsonl:4: the record has no 'id' field"):
    run_generation_job(src, out, backend, GenerationOptions())
  with pytest.raises(ValueError, match=r"in.jsonl:1: the record has no 'doc' field"):
    run_generation_job(src, out, backend, GenerationOptions(), JobConfig(id_field="doc"))
  assert backend.seen == []


def test_a_kill_while_renaming_a_reordered_shard_leaves_no_duplicates(tmp_path):
  src, out = str(tmp_path / "in.jsonl"), str(tmp_path / "out")
  _write(src, ["q0", "q1", "q2"])
  cfg = JobConfig(shard_size=3, batch_size=3)
  run_generation_job(src, out, FlakyBackend(failing={"q1"}), GenerationOptions(), cfg)
  partial = os.path.join(out, "part-00000.jsonl.inprogress")
  with open(partial, encoding="utf-8") as f:
    kept = f.read()
  run_generation_job(src, out, FlakyBackend(), GenerationOptions(), cfg)
  # The state a kill between the final rename and the clean-up leaves behind.
  with open(partial, "w", encoding="utf-8") as f:
    f.write(kept)
  with open(os.path.join(out, "failures-00000.jsonl"), "w", encoding="utf-8") as f:
    f.write(json.dumps({"id": "r1", "error": "x"}) + "\n")
  assert [r["id"] for r in read_outputs(out, include_incomplete=True)] == ["r0", "r1", "r2"]
  assert run_generation_job(src, out, FlakyBackend(), GenerationOptions(), cfg) == 0
  assert os.listdir(out) == ["part-00000.jsonl"]


_CHILD = textwrap.dedent("""
    import sys
    from langshift.generation.interface import GenerationOptions
    from langshift.generation.job import JobConfig, run_generation_job
    from langshift.generation.outcomes import GenerationFailure

    class FailsMultiplesOfFive:
      def chat_outcomes(self, conversations, options):
        texts = [c[-1]["content"] for c in conversations]
        fail = GenerationFailure("http://x/v1", "http", "no", 400)
        return [fail if int(t[1:]) % 5 == 0 else t[::-1] for t in texts]

    run_generation_job(sys.argv[1], sys.argv[2], FailsMultiplesOfFive(), GenerationOptions(),
                       JobConfig(shard_size=6, batch_size=2, fault_counter="rewrite_records"))
""")


def test_sigkill_in_a_run_with_failures_then_rerun_writes_each_record_once(tmp_path):
  src, out = str(tmp_path / "in.jsonl"), str(tmp_path / "out")
  _write(src, [f"q{i}" for i in range(20)])
  env = {**os.environ, "PYTHONPATH": REPO, "LANGSHIFT_FAULT": "kill@rewrite_records=9"}
  child = subprocess.run([sys.executable, "-c", _CHILD, src, out], env=env, timeout=120)
  assert child.returncode == -signal.SIGKILL
  partial = read_outputs(out, include_incomplete=True)
  assert len(partial) == 9 and {r["id"] for r in read_failures(out)} == {"r0", "r5", "r10"}
  for _ in range(2):  # the second rerun has nothing left to do
    run_generation_job(
        src, out, FlakyBackend(), GenerationOptions(), JobConfig(shard_size=6, batch_size=2)
    )
  records = read_outputs(out)
  assert [r["id"] for r in records] == [f"r{i}" for i in range(20)]
  assert [r["completion"] for r in records[:3]] == ["re: q0", "1q", "2q"]
  assert sorted(os.listdir(out)) == [f"part-0000{i}.jsonl" for i in range(4)]
