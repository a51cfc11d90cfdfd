import http.server
import json
import threading

import pytest

from langshift.generation.interface import GenerationOptions
from langshift.generation.openai_client import OpenAIError, OpenAIGenerator


class FakeOpenAI(http.server.ThreadingHTTPServer):
  """Answers /v1/chat/completions and /v1/completions; fails the first `fail_first` requests."""

  def __init__(self, fail_first=0):
    super().__init__(("127.0.0.1", 0), _Handler)
    self.requests, self.fail_first, self.lock = [], fail_first, threading.Lock()


class _Handler(http.server.BaseHTTPRequestHandler):

  def log_message(self, *args):
    pass

  def do_POST(self):
    body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
    server = self.server
    with server.lock:
      server.requests.append((self.path, body, self.headers.get("Authorization")))
      fail = len(server.requests) <= server.fail_first
    if fail:
      self._send(503, {"error": "busy"})
    elif self.path == "/v1/chat/completions":
      text = "echo: " + body["messages"][-1]["content"]
      self._send(
          200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}
      )
    elif self.path == "/v1/completions":
      self._send(200, {"choices": [{"index": 0, "text": body["prompt"][::-1] + " END tail"}]})
    else:
      self._send(404, {"error": "no route"})

  def _send(self, code, payload):
    data = json.dumps(payload).encode()
    self.send_response(code)
    self.send_header("Content-Type", "application/json")
    self.send_header("Content-Length", str(len(data)))
    self.end_headers()
    self.wfile.write(data)


@pytest.fixture
def server():
  def start(fail_first=0):
    srv = FakeOpenAI(fail_first)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    servers.append(srv)
    return srv, f"http://127.0.0.1:{srv.server_address[1]}/v1"

  servers = []
  yield start
  for srv in servers:
    srv.shutdown()
    srv.server_close()


def test_chat_and_completions_round_trip_with_sampling_fields(server):
  srv, url = server()
  gen = OpenAIGenerator(url, "tiny", api_key="k", max_concurrency=3, timeout_s=5)
  opts = GenerationOptions(
      max_new_tokens=7, temperature=0.5, top_k=4, top_p=0.9, seed=10, stop=(" END",)
  )
  convs = [[{"role": "user", "content": f"hi {i}"}] for i in range(5)]
  assert gen.chat(convs, opts) == [f"echo: hi {i}" for i in range(5)]
  assert gen.complete(["abc", "xy"], opts) == ["cba", "yx"]  # cut at the stop string
  assert len(srv.requests) == 7
  path, body, auth = sorted(srv.requests, key=lambda r: (r[0], r[1].get("seed")))[0]
  assert path == "/v1/chat/completions" and auth == "Bearer k"
  assert body["model"] == "tiny" and body["max_tokens"] == 7 and body["temperature"] == 0.5
  assert body["top_k"] == 4 and body["top_p"] == 0.9 and body["stop"] == [" END"]
  assert sorted(b["seed"] for p, b, _ in srv.requests if p.endswith("chat/completions")) == list(
      range(10, 15)
  )


def test_transient_errors_are_retried_a_bounded_number_of_times(server):
  srv, url = server(fail_first=2)
  gen = OpenAIGenerator(url, "m", max_retries=2, backoff_s=0.01, timeout_s=5)
  assert gen.chat([[{"role": "user", "content": "x"}]], GenerationOptions()) == ["echo: x"]
  assert len(srv.requests) == 3
  srv2, url2 = server(fail_first=100)
  with pytest.raises(OpenAIError, match="503"):
    OpenAIGenerator(url2, "m", max_retries=1, backoff_s=0.01, timeout_s=5).complete(
        ["x"], GenerationOptions()
    )
  assert len(srv2.requests) == 2
