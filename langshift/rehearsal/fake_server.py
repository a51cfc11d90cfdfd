"""A local OpenAI-compatible server that stands in for a rehearsal's server roles (expert,
teacher, judges): /v1/chat/completions and /v1/completions, answering by what the request asks.

  a judge prompt (asks for "[[A]]" / "[[B]]")  a few sentences of reasoning, then the verdict
                                               for the longer answer ([[A]] on a tie)
  an Arena-Hard prompt (labels "[[A>>B]]"...)  reasoning, then "[[A>B]]" / "[[B>A]]" for the
                                               longer answer, "[[A=B]]" on a tie
  a grading prompt (asks for a "[[rating]]")   reasoning, then "[[8]]"
  a rewrite (a <document>...</document>)       the document, its first two words swapped
  a continuation ("Continue the following")    the text's last sentence again, as continuation
  anything else                                a short answer that restates the request

What a judge is asked for is looked up in the system prompt too (MT-Bench and Arena-Hard state
their output format there); everything else reads the last message. Tokens are counted as
whitespace-separated words: an answer longer than the request's `max_tokens` is cut to its first
`max_tokens` words with `finish_reason: "length"` (a judge given too small a budget loses its
verdict, as a real one would). Every request is kept in `requests`.
"""

from __future__ import annotations

import http.server
import json
import re
import sys
import threading

_DOCUMENT = re.compile(r"<document>\n?(.*?)\n?</document>", re.S)
_PAIR = re.compile(
    r"\[The Start of Assistant A's Answer\]\n(.*)\n\[The End of Assistant A's Answer\].*"
    r"\[The Start of Assistant B's Answer\]\n(.*)\n\[The End of Assistant B's Answer\]"
    r"|\[Reply A\]\n(.*)\n\[End of Reply A\].*\[Reply B\]\n(.*)\n\[End of Reply B\]",
    re.S,
)
# Arena-Hard's judge template (langshift/evaluation/arena_hard.py: PROMPT_TEMPLATE).
_ARENA_PAIR = re.compile(
    r"<\|The Start of Assistant A's Answer\|>\n(.*)\n<\|The End of Assistant A's Answer\|>.*"
    r"<\|The Start of Assistant B's Answer\|>\n(.*)\n<\|The End of Assistant B's Answer\|>",
    re.S,
)
REASONING = (
    "Both replies address the question. The first one is more direct, while the second one "
    "adds less detail. Neither reply contains harmful content, and both use the language of "
    "the question."
)


def answer(content: str, system: str = "") -> str:
  """The server's whole answer to a request whose last message (or prompt) is `content` and
  whose system prompt is `system`."""
  asked = f"{system}\n{content}"
  if "[[A>>B]]" in asked and "[[B>>A]]" in asked:
    pair = _ARENA_PAIR.search(content)
    first, second = (len(pair.group(1)), len(pair.group(2))) if pair else (0, 0)
    label = "[[A>B]]" if first > second else ("[[B>A]]" if second > first else "[[A=B]]")
    return f"{REASONING} My final verdict is: {label}"
  if "[[A]]" in content and "[[B]]" in content:
    pair = _PAIR.search(content)
    first, second = [g for g in pair.groups() if g is not None] if pair else ("", "")
    verdict = "[[B]]" if len(second) > len(first) else "[[A]]"
    return f"{REASONING} Verdict: {verdict}"
  if "[[rating]]" in asked.lower():
    return f"{REASONING} Rating: [[8]]"
  document = _DOCUMENT.search(content)
  if document:
    words = document.group(1).strip().split(" ")
    words[:2] = words[1::-1]  # a light edit: the rewrite differs from the original
    return " ".join(words)
  if content.startswith("Continue the following"):
    text = content.rsplit("\n\n", 1)[-1]
    sentences = [s for s in re.split(r"(?<=[.!?。])\s*", text) if s.strip()]
    return " ".join(sentences[-2:]) if sentences else text
  return "Here is my answer: " + " ".join(content.split()[:24])


def cut(text: str, max_tokens: int | None) -> tuple[str, str]:
  """(text, finish_reason): at most `max_tokens` words (whitespace-separated)."""
  words = text.split()
  if max_tokens is not None and len(words) > max_tokens:
    return " ".join(words[:max_tokens]), "length"
  return text, "stop"


class FakeOpenAIServer(http.server.ThreadingHTTPServer):
  """`with FakeOpenAIServer() as server: ... server.url ...` (http://127.0.0.1:<port>/v1)."""

  daemon_threads = True

  def __init__(self):
    super().__init__(("127.0.0.1", 0), _Handler)
    self.requests: list[dict] = []
    self.lock = threading.Lock()

  @property
  def url(self) -> str:
    return f"http://127.0.0.1:{self.server_address[1]}/v1"

  def handle_error(self, request, client_address):
    if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that hung up: not news
      super().handle_error(request, client_address)

  def __enter__(self) -> FakeOpenAIServer:
    threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()
    return self

  def __exit__(self, *exc):
    self.shutdown()
    self.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):

  def log_message(self, *args):
    pass

  def do_POST(self):
    body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
    chat = self.path.endswith("/chat/completions")
    content = body["messages"][-1]["content"] if chat else body.get("prompt", "")
    system = "\n".join(m["content"] for m in body.get("messages", []) if m.get("role") == "system")
    with self.server.lock:
      self.server.requests.append(body)
    text, finish = cut(answer(content, system), body.get("max_tokens"))
    choice = {"index": 0, "finish_reason": finish}
    choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
    usage = {"prompt_tokens": len(content.split()), "completion_tokens": len(text.split())}
    payload = json.dumps({"choices": [choice], "usage": usage}).encode()
    self.send_response(200)
    self.send_header("Content-Type", "application/json")
    self.send_header("Content-Length", str(len(payload)))
    self.end_headers()
    self.wfile.write(payload)
