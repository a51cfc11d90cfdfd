"""Inputs of the native-alignment tests: a tiny Arabic corpus with duplicates, a tiny chat model,
and an expert behind a fake OpenAI-compatible server that returns the document it was given."""

from __future__ import annotations

import http.server
import json
import os
import random
import re
import sys
import threading

import hf_testing

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "data"))
import data_fixtures  # noqa: E402

WORDS = (
    "كتاب مدينة نظام ملف خادم حزمة شبكة برنامج تثبيت إعداد قرص مستخدم أمر دليل "
    "ذاكرة نواة واجهة مكتبة تحديث أمان جدار بيانات سجل خدمة"
).split()


def arabic_documents(n: int, seed: int = 0) -> list[str]:
  """`n` distinct Arabic documents of two paragraphs each."""
  rng = random.Random(seed)

  def paragraph():
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 24))) + "."

  return [f"{paragraph()} {i}\n\n{paragraph()}" for i in range(n)]


def write_corpus(path, n=20):
  """The corpus plus an exact duplicate (extra spaces) and a near duplicate (one word changed)."""
  docs = arabic_documents(n)
  words = docs[3].split(" ")
  words[2] = "تغيير"
  records = [{"id": f"d{i:03d}", "text": t} for i, t in enumerate(docs)]
  records.append({"id": "dup_exact", "text": "  " + docs[1].replace(" ", "  ")})
  records.append({"id": "dup_near", "text": " ".join(words)})
  data_fixtures.write_jsonl(path, records)
  return records


def write_chat_model(directory, chat_template=data_fixtures.LLAMA3_STYLE_TEMPLATE):
  """A tiny random Llama with a byte-level BPE tokenizer and a chat template (`None`: none, as
  a base checkpoint)."""
  tok_dir = data_fixtures.write_bpe_tokenizer(directory, chat_template=chat_template)
  from tokenizers import Tokenizer

  tok = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
  hf_testing.make_hf_model(
      "llama31",
      directory,
      vocab_size=tok.get_vocab_size(),
      bos_token_id=tok.token_to_id("<|begin_of_text|>"),
      eos_token_id=tok.token_to_id("<|eot_id|>"),
      pad_token_id=tok.token_to_id("<pad>"),
  )
  return str(directory)


_DOCUMENT = re.compile(r"<document>\n?(.*?)\n?</document>", re.S)


class FakeExpert(http.server.ThreadingHTTPServer):
  """/v1/chat/completions answering with the document between <document> tags, lightly edited
  (one word replaced), so rewrites differ from originals; any other request gets "[[A]]"."""

  def __init__(self):
    super().__init__(("127.0.0.1", 0), _Handler)
    self.requests = 0
    self.bodies: list[dict] = []  # every request's JSON body, in arrival order
    self.lock = threading.Lock()

  @property
  def url(self):
    return f"http://127.0.0.1:{self.server_address[1]}/v1"

  def __enter__(self):
    threading.Thread(target=self.serve_forever, daemon=True).start()
    return self

  def __exit__(self, *exc):
    self.shutdown()
    self.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):

  def log_message(self, *args):
    pass

  def do_POST(self):
    body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
    with self.server.lock:
      self.server.requests += 1
      self.server.bodies.append(body)
    content = body["messages"][-1]["content"]
    match = _DOCUMENT.search(content)
    if match:  # a rewriting request
      text = match.group(1).strip().replace("خادم", "الخادم")
    else:  # a judging request: always the first answer (a position-biased judge)
      text = "Verdict: [[A]]"
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
