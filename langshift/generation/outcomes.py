"""Per-request outcomes of a generation batch: a finished text or a `GenerationFailure`.

A remote backend can fail one request of a batch (a prompt over the context size, a server that
went away) while the others finish; returning every request's outcome keeps the finished ones.
Backends that can fail per request offer `chat_outcomes` / `complete_outcomes` next to the
`TextGenerator` methods; `chat_outcomes(generator, ...)` and `complete_outcomes(generator, ...)`
here call them when present and otherwise wrap `chat` / `complete` (a local model never fails per
request: it fails the whole batch or not at all).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from langshift.generation.interface import GenerationOptions, Message, TextGenerator

_KIND_WORDS = {
    "connection": "connection error",
    "timeout": "timed out",
    "bad_response": "bad answer",
}


@dataclasses.dataclass(frozen=True)
class GenerationFailure:
  """Why one request produced no text.

  `kind`: "http" (the server answered with an error status), "connection" (refused, reset,
  closed), "timeout", or "bad_response" (a 200 whose body is not a completion). `transient` says
  whether the error was of a kind that may succeed later (retries ran out) rather than a verdict
  on the request itself (a validation error): a batch whose requests all failed transiently means
  the endpoint is unavailable.
  """

  endpoint: str
  kind: str
  message: str
  status: int | None = None
  attempts: int = 1
  transient: bool = False

  def __str__(self) -> str:
    what = (
        f"HTTP {self.status}" if self.status is not None else _KIND_WORDS.get(self.kind, self.kind)
    )
    tries = "attempt" if self.attempts == 1 else "attempts"
    return f"{self.endpoint}: {what} after {self.attempts} {tries}: {self.message}"

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


Outcome = str | GenerationFailure


class GenerationError(RuntimeError):
  """Requests failed; `failures` holds every failed request's `GenerationFailure`."""

  def __init__(self, message: str, failures: Sequence[GenerationFailure] = ()):
    super().__init__(message)
    self.failures = list(failures)


def texts_or_raise(outcomes: Sequence[Outcome], error=GenerationError) -> list[str]:
  """The texts of a batch in which every request finished; else one error after all finished."""
  failures = [o for o in outcomes if isinstance(o, GenerationFailure)]
  if not failures:
    return list(outcomes)
  first = failures[0]
  raise error(
      f"{len(failures)} of {len(outcomes)} requests failed; first: {first}", failures=failures
  )


def chat_outcomes(
    generator: TextGenerator,
    conversations: Sequence[Sequence[Message]],
    options: GenerationOptions,
) -> list[Outcome]:
  method = getattr(generator, "chat_outcomes", None)
  if method is not None:
    return method(conversations, options)
  return list(generator.chat(conversations, options))


def complete_outcomes(
    generator: TextGenerator, prompts: Sequence[str], options: GenerationOptions
) -> list[Outcome]:
  method = getattr(generator, "complete_outcomes", None)
  if method is not None:
    return method(prompts, options)
  return list(generator.complete(prompts, options))
