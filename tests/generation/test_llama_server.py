"""The OpenAI client and the generation job against a real llama.cpp server (llama-cpp-python,
SmolLM2-135M-Instruct GGUF): run when `launch/llama_server.sh install` has built .venv-llama/
(the tests start and stop the server themselves), or when LANGSHIFT_LLAMA_URL names a running
one (then the kill-and-restart test is skipped). CI does not build the server: the failure paths
are covered there by the fake server of test_openai_client.py.
"""

import json
import os
import signal
import subprocess
import threading
import time

import pytest
from fake_openai_server import free_port

from langshift.generation.chat_render import chat_renderer
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
SCRIPT = os.path.join(REPO, "launch", "llama_server.sh")
URL_ENV = "LANGSHIFT_LLAMA_URL"
BUILT = os.path.exists(os.path.join(REPO, ".venv-llama", "bin", "python"))
TOKENIZER_DIR = os.path.join(REPO, ".cache", "smollm2-135m-instruct")
CONTEXT = 2048  # llama-cpp-python's default n_ctx

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (BUILT or os.environ.get(URL_ENV)),
        reason=f"no llama.cpp server: run launch/llama_server.sh install, or set {URL_ENV}",
    ),
]


class LlamaServer:
  """A server this module started (it may kill and restart it), or the one LANGSHIFT_LLAMA_URL
  names."""

  def __init__(self):
    self.url = os.environ.get(URL_ENV)
    self.port = None if self.url else free_port()
    if self.port:
      self.start()

  @property
  def ours(self) -> bool:
    return self.port is not None

  def start(self):
    out = subprocess.run(
        [SCRIPT, "start", f"--port={self.port}"], check=True, capture_output=True, text=True
    )
    self.url = out.stdout.strip().splitlines()[-1]

  def kill(self):
    """SIGKILL, as a crash would: no clean shutdown of in-flight requests."""
    with open(self.pid_file, encoding="utf-8") as f:
      pid = int(f.read())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
      time.sleep(0.05)

  def stop(self):
    subprocess.run([SCRIPT, "stop", f"--port={self.port}"], check=True, capture_output=True)
    os.remove(self.log_path)  # one per test session, each on its own port

  @property
  def log_path(self) -> str:
    return os.path.join(REPO, ".venv-llama", "run", f"server-{self.port}.log")

  @property
  def pid_file(self) -> str:
    return os.path.join(REPO, ".venv-llama", "run", f"server-{self.port}.pid")

  def log_lines(self, route: str) -> int:
    """How many requests to `route` the server has logged (0 for a server we did not start)."""
    if not self.ours:
      return 0
    with open(self.log_path, encoding="utf-8", errors="replace") as f:
      return sum(f'"POST /v1{route} HTTP' in line for line in f)


def _alive(pid: int) -> bool:
  """Running (a killed process that nobody has reaped yet is a zombie, not running)."""
  try:
    with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except FileNotFoundError:
    return False


@pytest.fixture(scope="module")
def server():
  srv = LlamaServer()
  yield srv
  if srv.ours:
    srv.stop()


def _user(text):
  return [{"role": "user", "content": text}]


def _post(url, route, body):
  """The server's whole answer (with `usage`), which the generator's methods reduce to text."""
  return OpenAIGenerator(url, "smollm2", timeout_s=120)._post(route, body)


def test_chat_completions_and_prompt_token_counts_match_langshift_rendering(server):
  from langshift.tokenization.tokenizer import load_tokenizer

  tokenizer = load_tokenizer(TOKENIZER_DIR)
  render = chat_renderer(tokenizer)
  conversations = [
      _user("What is the capital of France?"),
      [{"role": "system", "content": "Answer in one word."}, *_user("Name a colour.")],
      [*_user("Привет, как дела?"), {"role": "assistant", "content": "Хорошо."}, *_user("مرحبا")],
  ]
  for messages in conversations:
    answer = _post(
        server.url, "/chat/completions", {"messages": messages, "max_tokens": 8, "temperature": 0}
    )
    assert not isinstance(answer, GenerationFailure), answer
    assert answer["usage"]["prompt_tokens"] == len(tokenizer.encode(render(messages)))
    assert 0 < answer["usage"]["completion_tokens"] <= 8
  gen = OpenAIGenerator(server.url, "smollm2", max_concurrency=3, timeout_s=120)
  texts = gen.chat(conversations, GenerationOptions(max_new_tokens=8))
  assert len(texts) == 3 and all(t.strip() for t in texts)
  assert gen.usage["requests"] == 3


def test_invalid_requests_in_a_batch_fail_alone_and_are_not_retried(server, tmp_path):
  before = server.log_lines("/chat/completions")
  gen = OpenAIGenerator(server.url, "smollm2", max_concurrency=4, max_retries=3, timeout_s=120)
  too_long = _user("word " * (CONTEXT + 100))
  bad_role = [{"role": "narrator", "content": "hi"}]  # llama-cpp-python: 500 + validation error
  outcomes = gen.chat_outcomes(
      [_user("Say hi."), too_long, bad_role, _user("Say bye.")], GenerationOptions(max_new_tokens=8)
  )
  assert isinstance(outcomes[0], str) and isinstance(outcomes[3], str)
  over, invalid = outcomes[1], outcomes[2]
  assert (over.status, over.attempts, over.transient) == (400, 1, False)
  assert "context" in over.message
  assert (invalid.status, invalid.attempts, invalid.transient) == (500, 1, False)
  assert "validation error" in invalid.message
  if server.ours:
    assert server.log_lines("/chat/completions") - before == 4  # one request each: no retry

  src, out = str(tmp_path / "in.jsonl"), str(tmp_path / "out")
  with open(src, "w", encoding="utf-8") as f:
    for i, messages in enumerate([_user("Say hi."), too_long, _user("Say bye.")]):
      f.write(json.dumps({"id": i, "messages": messages}) + "\n")
  result = run_generation_job(src, out, gen, GenerationOptions(max_new_tokens=8))
  assert (result.written, result.failed) == (2, 1)
  [failure] = read_failures(out)
  assert failure["id"] == 1 and failure["attempts"] == 1 and "HTTP 400" in failure["error"]


def _write_requests(path, n):
  topics = ["rivers", "bread", "stars", "trains", "music", "rain", "maps", "bees"]
  with open(path, "w", encoding="utf-8") as f:
    for i in range(n):
      question = f"Write one sentence about {topics[i % len(topics)]} (note {i})."
      f.write(json.dumps({"id": f"doc-{i}", "messages": _user(question)}) + "\n")


def test_job_over_16_records_with_4_in_flight_completes(server, tmp_path):
  src, out = str(tmp_path / "in.jsonl"), str(tmp_path / "out")
  _write_requests(src, 16)
  gen = OpenAIGenerator(server.url, "smollm2", max_concurrency=4, timeout_s=120)
  result = run_generation_job(
      src, out, gen, GenerationOptions(max_new_tokens=16), JobConfig(shard_size=8, batch_size=8)
  )
  assert (result.written, result.failed, result.incomplete_shards) == (16, 0, 0)
  records = read_outputs(out)
  assert [r["id"] for r in records] == [f"doc-{i}" for i in range(16)]
  assert all(r["completion"].strip() and r["generator"] == gen.name for r in records)


def test_server_killed_mid_job_then_restarted_and_rerun_completes_exactly_once(server, tmp_path):
  if not server.ours:
    pytest.skip(f"{URL_ENV} names a server this test cannot kill and restart")
  src, out = str(tmp_path / "in.jsonl"), str(tmp_path / "out")
  _write_requests(src, 16)
  gen = OpenAIGenerator(
      server.url, "smollm2", max_concurrency=4, max_retries=2, backoff_s=0.2, timeout_s=120
  )
  cfg = JobConfig(shard_size=8, batch_size=4)
  options = GenerationOptions(max_new_tokens=32)
  killer = []

  def kill_during_the_next_batch(written):
    if not killer:  # after the first durable batch, while the second is being generated
      killer.append(threading.Timer(0.3, server.kill))
      killer[0].start()

  try:
    with pytest.raises(EndpointUnavailable, match=server.url):
      run_generation_job(src, out, gen, options, cfg, on_batch_written=kill_during_the_next_batch)
  finally:
    killer[0].join()
    server.start()
  before = {r["id"]: r["completion"] for r in read_outputs(out, include_incomplete=True)}
  assert 4 <= len(before) < 16
  result = run_generation_job(src, out, gen, options, cfg)
  assert result.written == 16 - len(before) and result.failed == 0
  records = read_outputs(out)
  assert [r["id"] for r in records] == [f"doc-{i}" for i in range(16)]  # each once
  assert all(r["completion"] == before[r["id"]] for r in records if r["id"] in before)
  assert sorted(os.listdir(out)) == ["part-00000.jsonl", "part-00001.jsonl"]
