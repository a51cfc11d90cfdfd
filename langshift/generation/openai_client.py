"""`TextGenerator` backed by an OpenAI-compatible HTTP server (vLLM, llama.cpp, TGI, OpenAI).

Standard library only (urllib). Requests in a batch run on a small thread pool; transient
failures (connection errors, 429, 5xx) are retried with exponential backoff a bounded number of
times, then raised.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence

from langshift.generation.interface import GenerationOptions, Message, truncate_at_stop

_RETRYABLE_STATUS = (429, 500, 502, 503, 504)


class OpenAIError(RuntimeError):
  pass


class OpenAIGenerator:
  """Chat and text completions from `{base_url}/chat/completions` and `{base_url}/completions`.

  `base_url` includes the version prefix, e.g. "http://127.0.0.1:8000/v1".
  """

  def __init__(
      self,
      base_url: str,
      model: str,
      *,
      api_key: str | None = None,
      timeout_s: float = 120.0,
      max_concurrency: int = 8,
      max_retries: int = 3,
      backoff_s: float = 0.5,
  ):
    self.base_url = base_url.rstrip("/")
    self.model, self.api_key = model, api_key
    self.timeout_s, self.max_concurrency = timeout_s, max_concurrency
    self.max_retries, self.backoff_s = max_retries, backoff_s
    host = urllib.parse.urlparse(self.base_url).hostname
    # A local server is reached directly even when the environment sets an HTTP proxy.
    loopback = host in ("127.0.0.1", "localhost", "::1")
    handlers = [urllib.request.ProxyHandler({})] if loopback else []
    self._opener = urllib.request.build_opener(*handlers)

  def complete(self, prompts: Sequence[str], options: GenerationOptions) -> list[str]:
    def one(i_prompt):
      i, prompt = i_prompt
      body = {"prompt": prompt, **self._sampling_fields(options, i)}
      return self._post("/completions", body)["choices"][0]["text"]

    return [truncate_at_stop(t, options.stop) for t in self._map(one, list(enumerate(prompts)))]

  def chat(
      self, conversations: Sequence[Sequence[Message]], options: GenerationOptions
  ) -> list[str]:
    def one(i_messages):
      i, messages = i_messages
      body = {"messages": list(messages), **self._sampling_fields(options, i)}
      return self._post("/chat/completions", body)["choices"][0]["message"]["content"] or ""

    return [
        truncate_at_stop(t, options.stop) for t in self._map(one, list(enumerate(conversations)))
    ]

  def _sampling_fields(self, options: GenerationOptions, index: int) -> dict:
    fields = {
        "model": self.model,
        "max_tokens": options.max_new_tokens,
        "temperature": options.temperature,
        "top_p": options.top_p,
        "seed": options.seed + index,
    }
    if options.top_k > 0:
      fields["top_k"] = options.top_k  # a vLLM / llama.cpp extension of the API
    if options.stop:
      fields["stop"] = list(options.stop)
    return fields

  def _map(self, fn, items):
    if len(items) <= 1 or self.max_concurrency <= 1:
      return [fn(x) for x in items]
    with concurrent.futures.ThreadPoolExecutor(min(self.max_concurrency, len(items))) as pool:
      return list(pool.map(fn, items))

  def _post(self, route: str, body: dict) -> dict:
    headers = {"Content-Type": "application/json"}
    if self.api_key:
      headers["Authorization"] = f"Bearer {self.api_key}"
    data = json.dumps(body).encode("utf-8")
    for attempt in range(self.max_retries + 1):
      request = urllib.request.Request(
          self.base_url + route, data=data, headers=headers, method="POST"
      )
      try:
        with self._opener.open(request, timeout=self.timeout_s) as response:
          return json.loads(response.read().decode("utf-8"))
      except urllib.error.HTTPError as e:
        detail = e.read().decode("utf-8", "replace")[:500]
        if e.code not in _RETRYABLE_STATUS or attempt == self.max_retries:
          raise OpenAIError(f"POST {route}: HTTP {e.code}: {detail}") from e
      except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
        if attempt == self.max_retries:
          raise OpenAIError(f"POST {route}: {e}") from e
      time.sleep(self.backoff_s * 2**attempt)
    raise AssertionError("unreachable")
