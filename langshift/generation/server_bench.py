"""Throughput of an OpenAI-compatible server through `OpenAIGenerator` at several concurrencies.

  launch/llama_server.sh start --port=8091
  python -m langshift.generation.server_bench --base_url=http://127.0.0.1:8091/v1 \
      --concurrency=1,4 --requests=16 --max_new_tokens=64

Every concurrency answers the same chat prompts (greedy), after one warm-up request; generated
tokens are the server's own `usage.completion_tokens`.
"""

from __future__ import annotations

import time

from absl import app, flags

from langshift.generation.interface import GenerationOptions
from langshift.generation.openai_client import OpenAIGenerator

_URL = flags.DEFINE_string("base_url", "http://127.0.0.1:8091/v1", "Server, with /v1.")
_MODEL = flags.DEFINE_string("model", "default", "Model name on the server.")
_CONCURRENCY = flags.DEFINE_list("concurrency", ["1", "4"], "Requests in flight, per run.")
_REQUESTS = flags.DEFINE_integer("requests", 16, "Chat prompts per run.")
_MAX_NEW = flags.DEFINE_integer("max_new_tokens", 64, "Token limit per answer.")

_TOPICS = ("rivers", "bread", "stars", "trains", "music", "rain", "maps", "bees")


def bench_prompts(n: int) -> list[list[dict]]:
  return [
      [{"role": "user", "content": f"Write a short paragraph about {_TOPICS[i % len(_TOPICS)]}."}]
      for i in range(n)
  ]


def measure(base_url: str, model: str, concurrency: int, requests: int, max_new: int) -> dict:
  """requests/s and generated tokens/s for `requests` chats with `concurrency` in flight."""
  gen = OpenAIGenerator(base_url, model, max_concurrency=concurrency, timeout_s=600)
  options = GenerationOptions(max_new_tokens=max_new)
  gen.chat(bench_prompts(1), options)  # warm-up: the first request pays one-off set-up
  before = gen.usage
  began = time.perf_counter()
  gen.chat(bench_prompts(requests), options)
  seconds = time.perf_counter() - began
  tokens = gen.usage["completion_tokens"] - before["completion_tokens"]
  return dict(
      concurrency=concurrency,
      seconds=seconds,
      requests_per_s=requests / seconds,
      generated_tokens=tokens,
      tokens_per_s=tokens / seconds,
  )


def main(argv):
  del argv
  print("| in flight | wall s | requests/s | generated tokens | generated tokens/s |")
  print("|---|---|---|---|---|")
  for n in (int(c) for c in _CONCURRENCY.value):
    r = measure(_URL.value, _MODEL.value, n, _REQUESTS.value, _MAX_NEW.value)
    print(
        f"| {n} | {r['seconds']:.1f} | {r['requests_per_s']:.2f} | {r['generated_tokens']} "
        f"| {r['tokens_per_s']:.1f} |",
        flush=True,
    )


if __name__ == "__main__":
  app.run(main)
