"""Inputs of the non-instructional tests: English documents, a tiny chat model, and a teacher
behind a fake OpenAI-compatible server that continues the text it is given."""

from __future__ import annotations

import http.server
import json
import random
import re
import threading

import native_alignment_fixtures as na_fx

data_fixtures = na_fx.data_fixtures
write_chat_model = na_fx.write_chat_model
WORDS = (
    "the server package network program install setup disk user command guide memory kernel "
    "interface library update security firewall data log service"
).split()


def english_documents(n: int, seed: int = 0, words=(20, 40)) -> list[str]:
  rng = random.Random(seed)
  return [
      " ".join(rng.choice(WORDS) for _ in range(rng.randint(*words))) + f". {i}" for i in range(n)
  ]


def write_corpus(path, n=10, **kwargs):
  records = [{"id": f"d{i:03d}", "text": t} for i, t in enumerate(english_documents(n, **kwargs))]
  data_fixtures.write_jsonl(path, records)
  return records


class FakeTeacher(http.server.ThreadingHTTPServer):
  """/v1/chat/completions continuing the first half after the prompt's blank line with its
  last five words reversed ("" for every request when `empty`), and judging pairwise prompts by
  answer length (`longer_answer_verdict`); counts requests per text."""

  def __init__(self, empty: bool = False):
    super().__init__(("127.0.0.1", 0), _Handler)
    self.empty, self.requests, self.lock = empty, [], threading.Lock()

  @property
  def url(self):
    return f"http://127.0.0.1:{self.server_address[1]}/v1"

  def __enter__(self):
    threading.Thread(target=self.serve_forever, daemon=True).start()
    return self

  def __exit__(self, *exc):
    self.shutdown()
    self.server_close()


def continuation(content: str) -> str:
  first_half = content.rsplit("\n\n", 1)[-1]
  return " ".join(reversed(first_half.split()[-5:]))


_ANSWERS = re.compile(
    r"\[The Start of Assistant A's Answer\]\n(.*)\n\[The End of Assistant A's Answer\].*"
    r"\[The Start of Assistant B's Answer\]\n(.*)\n\[The End of Assistant B's Answer\]",
    re.S,
)


def longer_answer_verdict(content: str) -> str:
  """A judge with a known preference: the longer answer wins; equal lengths get no verdict."""
  first, second = _ANSWERS.search(content).groups()
  if len(first) == len(second):
    return "They are equally good."
  return "[[A]]" if len(first) > len(second) else "[[B]]"


class _Handler(http.server.BaseHTTPRequestHandler):

  def log_message(self, *args):
    pass

  def do_POST(self):
    body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
    content = body["messages"][-1]["content"]
    with self.server.lock:
      self.server.requests.append(content)
    if content.startswith("Please act as an impartial judge"):
      text = longer_answer_verdict(content)
    else:
      text = "" if self.server.empty else continuation(content)
    payload = json.dumps(
        {
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": text},
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1},
        }
    ).encode()
    self.send_response(200)
    self.send_header("Content-Type", "application/json")
    self.send_header("Content-Length", str(len(payload)))
    self.end_headers()
    self.wfile.write(payload)
