"""An in-process OpenAI-compatible server whose answers the request text scripts, for the failure
paths of the client and the generation job (a real llama.cpp server is too slow to build in CI).

The last message's content (chat) or the prompt (completions) chooses the answer:
  "status:<code>[:<error type>[:<message>]]"  that HTTP status with an OpenAI-style error body
  "flaky:<n>:<code>"                          <code> for the first n requests with this text
  "sleep:<seconds>"                           answers after a delay (timeouts, concurrency)
  "reset"                                     closes the connection without an answer
  "grade:<text>"                              a judge: "Grade: <the first integer in text>", or
                                              "I cannot grade this." when text has none
  anything else                               200: "echo: <text>" (chat), the reversed prompt
"""

from __future__ import annotations

import collections
import http.server
import json
import re
import socket
import sys
import threading
import time


class FakeOpenAI(http.server.ThreadingHTTPServer):
  """Serves /v1/chat/completions and /v1/completions; fails the first `fail_first` requests."""

  daemon_threads = True

  def __init__(self, fail_first: int = 0, port: int = 0):
    super().__init__(("127.0.0.1", port), _Handler)
    self.requests, self.fail_first, self.lock = [], fail_first, threading.Lock()
    self.seen = collections.Counter()  # requests per text
    self.in_flight = self.max_in_flight = 0

  def handle_error(self, request, client_address):
    # A client that timed out has hung up before the (slow) answer: expected here, not news.
    if not isinstance(sys.exc_info()[1], ConnectionError):
      super().handle_error(request, client_address)

  @property
  def url(self) -> str:
    return f"http://127.0.0.1:{self.server_address[1]}/v1"

  def start(self) -> FakeOpenAI:
    # A short poll keeps shutdown (one per test) from waiting half a second.
    threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()
    return self

  def stop(self) -> None:
    self.shutdown()
    self.server_close()


def free_port() -> int:
  """A port nothing listens on (connection refused), for a server started later."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class _Handler(http.server.BaseHTTPRequestHandler):

  def log_message(self, *args):
    pass

  def do_POST(self):
    body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
    server = self.server
    text = body["messages"][-1]["content"] if "messages" in body else body.get("prompt", "")
    with server.lock:
      server.requests.append((self.path, body, self.headers.get("Authorization")))
      server.seen[text] += 1
      count = server.seen[text]
      fail = len(server.requests) <= server.fail_first
      server.in_flight += 1
      server.max_in_flight = max(server.max_in_flight, server.in_flight)
    try:
      reply = self._answer(body, text, count, fail)
    finally:
      # Out of flight before the answer is written: once the client has read it, it may send the
      # next request, which must not find this one still counted.
      with server.lock:
        server.in_flight -= 1
    if reply is None:
      self.close_connection = True
      self.connection.shutdown(socket.SHUT_RDWR)
    else:
      self._send(*reply)

  def _answer(self, body, text, count, fail):
    """(status, body) to send, or None to close the connection unanswered."""
    if fail:
      return (503, {"error": "busy"})
    if text.startswith("status:"):
      code, error_type, message = (text.split(":", 3)[1:] + ["", ""])[:3]
      error = {"message": message or f"status {code}", "type": error_type or "server_error"}
      return (int(code), {"error": error})
    if text.startswith("flaky:"):
      _, n, code = text.split(":")
      if count <= int(n):
        return (int(code), {"error": {"message": "try later", "type": "server_error"}})
    if text.startswith("sleep:"):
      time.sleep(float(text.split(":")[1]))
    if text == "reset":
      return None
    usage = {"prompt_tokens": len(text.split()), "completion_tokens": 3}
    if self.path == "/v1/chat/completions":
      answer = "echo: " + text
      if text.startswith("grade:"):
        number = re.search(r"\d+", text[len("grade:") :])
        answer = f"Grade: {number.group()}" if number else "I cannot grade this."
      return (
          200,
          {
              "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}],
              "usage": usage,
          },
      )
    if self.path == "/v1/completions":
      return (
          200,
          {"choices": [{"index": 0, "text": body["prompt"][::-1] + " END tail"}], "usage": usage},
      )
    return (404, {"error": "no route"})

  def _send(self, code, payload):
    data = json.dumps(payload).encode()
    self.send_response(code)
    self.send_header("Content-Type", "application/json")
    self.send_header("Content-Length", str(len(data)))
    self.end_headers()
    self.wfile.write(data)
