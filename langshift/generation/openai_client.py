"""`TextGenerator` backed by an OpenAI-compatible HTTP server (vLLM, llama.cpp, TGI, OpenAI).

Standard library only (urllib). A batch keeps up to `max_concurrency` requests in flight and
yields every request's outcome (`chat_outcomes`, `complete_outcomes`): a text, or a
`GenerationFailure` that does not cost the other requests their results. Only errors that can
succeed on a second try are retried, with exponential backoff a bounded number of times:
connection refused or reset, timeouts, HTTP 429, 502, 503, 504, and 500 unless its body says the
request itself is invalid (llama.cpp answers some validation errors, a prompt over the context
size among them, with 500). Other statuses (400, 401, 403, 404, 422, ...) fail at once.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from langshift.generation.interface import GenerationOptions, Message, truncate_at_stop
from langshift.generation.outcomes import (
    GenerationError,
    GenerationFailure,
    Outcome,
    texts_or_raise,
)

_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
# How servers say "this request is invalid" in an error body (OpenAI, vLLM, llama.cpp's server,
# llama-cpp-python): a second try would fail the same way. llama-cpp-python 0.3 answers a body
# that fails its schema with 500, type "internal_server_error" and pydantic's "N validation
# errors: ..." as the message.
_INVALID_REQUEST_TYPES = frozenset(
    {"invalid_request_error", "exceed_context_size_error", "not_supported_error"}
)
_INVALID_REQUEST_CODES = frozenset({"context_length_exceeded", "invalid_request_error"})
_INVALID_REQUEST_MESSAGE = re.compile(
    r"context (size|window|length)|exceeds? (the )?(available )?context|maximum context"
    r"|prompt is too long|too many tokens|\bvalidation errors?\b",
    re.IGNORECASE,
)
_DETAIL_CHARS = 300


class OpenAIError(GenerationError):
  pass


def error_detail(body: bytes) -> tuple[str, dict[str, Any]]:
  """(one-line message, the body's `error` object or {}) of an error response."""
  text = body.decode("utf-8", "replace")
  error: Any = {}
  try:
    payload = json.loads(text)
    error = payload.get("error", payload) if isinstance(payload, dict) else {}
  except ValueError:
    pass
  if isinstance(error, dict):
    message = error.get("message") or error.get("detail") or text
  else:
    message, error = str(error), {}
  return " ".join(str(message).split())[:_DETAIL_CHARS], error


def is_invalid_request(error: dict[str, Any], message: str) -> bool:
  """Whether a 500's body says the request itself is at fault (not worth retrying)."""
  return (
      error.get("type") in _INVALID_REQUEST_TYPES
      or error.get("code") in _INVALID_REQUEST_CODES
      or bool(_INVALID_REQUEST_MESSAGE.search(message))
  )


class OpenAIGenerator:
  """Chat and text completions from `{base_url}/chat/completions` and `{base_url}/completions`.

  `base_url` includes the version prefix, e.g. "http://127.0.0.1:8000/v1". `timeout_s` bounds
  each request (a server that queues requests makes the last of N in flight wait for the others).
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
      max_backoff_s: float = 30.0,
  ):
    self.base_url = base_url.rstrip("/")
    self.model, self.api_key = model, api_key
    self.name = f"{model}@{self.base_url}"  # what job outputs record as their generator
    self.timeout_s, self.max_concurrency = timeout_s, max(1, max_concurrency)
    self.max_retries, self.backoff_s, self.max_backoff_s = max_retries, backoff_s, max_backoff_s
    host = urllib.parse.urlparse(self.base_url).hostname
    # A local server is reached directly even when the environment sets an HTTP proxy.
    loopback = host in ("127.0.0.1", "localhost", "::1")
    handlers = [urllib.request.ProxyHandler({})] if loopback else []
    self._opener = urllib.request.build_opener(*handlers)
    self._usage_lock = threading.Lock()
    self._usage = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0}

  @property
  def usage(self) -> dict[str, int]:
    """Finished requests and the token counts servers reported for them, since construction."""
    with self._usage_lock:
      return dict(self._usage)

  def complete_outcomes(self, prompts: Sequence[str], options: GenerationOptions) -> list[Outcome]:
    """Continues raw prompts; one text or `GenerationFailure` per prompt."""
    self._check(options, "/completions")

    def one(i: int) -> Outcome:
      body = {"prompt": prompts[i], **self._sampling_fields(options, i)}
      return self._request("/completions", body, lambda r: r["choices"][0]["text"], options)

    return self._map(one, len(prompts))

  def chat_outcomes(
      self, conversations: Sequence[Sequence[Message]], options: GenerationOptions
  ) -> list[Outcome]:
    """Answers conversations (the server applies its chat template); one outcome each."""
    self._check(options, "/chat/completions")

    def one(i: int) -> Outcome:
      body = {"messages": list(conversations[i]), **self._sampling_fields(options, i)}
      return self._request(
          "/chat/completions",
          body,
          lambda r: r["choices"][0]["message"]["content"] or "",
          options,
      )

    return self._map(one, len(conversations))

  def complete(self, prompts: Sequence[str], options: GenerationOptions) -> list[str]:
    return texts_or_raise(self.complete_outcomes(prompts, options), OpenAIError)

  def chat(
      self, conversations: Sequence[Sequence[Message]], options: GenerationOptions
  ) -> list[str]:
    return texts_or_raise(self.chat_outcomes(conversations, options), OpenAIError)

  def _check(self, options: GenerationOptions, route: str) -> None:
    # llama.cpp and vLLM read max_tokens <= 0 as "until the context is full": never what a
    # caller asking for 0 new tokens meant.
    if options.max_new_tokens <= 0:
      raise ValueError(
          f"max_new_tokens={options.max_new_tokens}: must be at least 1 (servers read 0 as "
          f"'no limit'); nothing was sent to {self.base_url}{route}"
      )

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

  def _map(self, fn: Callable[[int], Outcome], n: int) -> list[Outcome]:
    if n <= 1 or self.max_concurrency <= 1:
      return [fn(i) for i in range(n)]
    with concurrent.futures.ThreadPoolExecutor(min(self.max_concurrency, n)) as pool:
      return list(pool.map(fn, range(n)))

  def _request(
      self,
      route: str,
      body: dict,
      text_of: Callable[[dict], str],
      options: GenerationOptions,
  ) -> Outcome:
    response = self._post(route, body)
    if isinstance(response, GenerationFailure):
      return response
    try:
      text = text_of(response)
    except (KeyError, IndexError, TypeError) as e:
      detail = " ".join(json.dumps(response)[:_DETAIL_CHARS].split())
      return GenerationFailure(
          self.base_url + route, "bad_response", f"no completion in the answer ({e!r}): {detail}"
      )
    usage = response.get("usage") or {}
    with self._usage_lock:
      self._usage["requests"] += 1
      for key in ("prompt_tokens", "completion_tokens"):
        self._usage[key] += int(usage.get(key) or 0)
    return truncate_at_stop(text, options.stop)

  def _post(self, route: str, body: dict) -> dict | GenerationFailure:
    """The parsed answer, or the failure of the last attempt once no retry is left to make."""
    endpoint = self.base_url + route
    headers = {"Content-Type": "application/json"}
    if self.api_key:
      headers["Authorization"] = f"Bearer {self.api_key}"
    data = json.dumps(body).encode("utf-8")
    attempt = 0
    while True:
      attempt += 1
      request = urllib.request.Request(endpoint, data=data, headers=headers, method="POST")
      retry_after = 0.0
      try:
        with self._opener.open(request, timeout=self.timeout_s) as response:
          raw = response.read()
        try:
          return json.loads(raw.decode("utf-8"))
        except ValueError:
          detail = " ".join(raw.decode("utf-8", "replace")[:_DETAIL_CHARS].split())
          return GenerationFailure(endpoint, "bad_response", f"not JSON: {detail}", 200, attempt)
      except urllib.error.HTTPError as e:
        try:
          message, error = error_detail(e.read())
        except (OSError, http.client.HTTPException):
          message, error = str(e.reason), {}
        transient = e.code in _RETRYABLE_STATUS
        if e.code == 500 and is_invalid_request(error, message):
          transient, message = False, f"invalid request: {message}"
        failure = GenerationFailure(endpoint, "http", message, e.code, attempt, transient)
        retry_after = _retry_after_s(e.headers)
      except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        # URLError wraps errors met while connecting; a reset or timeout while waiting for the
        # answer arrives unwrapped.
        reason = e.reason if isinstance(e, urllib.error.URLError) else e
        timed_out = isinstance(reason, TimeoutError)
        transient = timed_out or isinstance(reason, (ConnectionError, http.client.HTTPException))
        kind = "timeout" if timed_out else "connection"
        message = " ".join(str(reason).split())[:_DETAIL_CHARS] or type(reason).__name__
        failure = GenerationFailure(endpoint, kind, message, None, attempt, transient)
      if not failure.transient or attempt > self.max_retries:
        return failure
      backoff = self.backoff_s * 2 ** (attempt - 1)
      time.sleep(min(self.max_backoff_s, max(backoff, retry_after)))


def _retry_after_s(headers) -> float:
  """A `Retry-After: <seconds>` header (429, 503), else 0."""
  value = headers.get("Retry-After") if headers is not None else None
  try:
    return max(0.0, float(value)) if value else 0.0
  except ValueError:
    return 0.0
