"""The text-in, text-out interface every generation backend offers.

Teacher continuations, corpus rewriting, self-calibration, judging and evaluation all talk to a
`TextGenerator`, so a local JAX model and an OpenAI-compatible server (vLLM, llama.cpp) are
interchangeable behind it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

Message = dict  # {"role": "user" | "assistant" | "system", "content": str}


@dataclasses.dataclass(frozen=True)
class GenerationOptions:
  """Per-request decoding settings; temperature 0 means greedy."""

  max_new_tokens: int = 256
  temperature: float = 0.0
  top_k: int = 0
  top_p: float = 1.0
  seed: int = 0
  # Text-level stop strings, cut from the output (token-level end-of-turn ids stop the local
  # decoder by themselves).
  stop: tuple[str, ...] = ()


class TextGenerator(Protocol):

  def complete(self, prompts: Sequence[str], options: GenerationOptions) -> list[str]:
    """Continues raw prompts (no chat template)."""

  def chat(
      self, conversations: Sequence[Sequence[Message]], options: GenerationOptions
  ) -> list[str]:
    """Answers each conversation as the assistant (the backend applies its chat template)."""


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
  """Cuts `text` at the earliest occurrence of any stop string."""
  cut = len(text)
  for s in stop:
    i = text.find(s) if s else -1
    if i >= 0:
      cut = min(cut, i)
  return text[:cut]
