"""Prompt construction: k-shot for base models, zero-shot through the chat template for instruct
models (Darumeru's protocol: base 5-shot, instruct zero-shot)."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from langshift.evaluation.tasks import Example, TaskSpec

RenderChat = Callable[[Sequence[dict]], str]


def select_shots(
    pool: Sequence[Example], k: int, index: int, seed: int, same_pool: bool
) -> list[Example]:
  """k demonstrations for example `index`, fixed by (seed, index); the example itself is never
  its own demonstration when the pool is the task's own records."""
  if k <= 0 or not pool:
    return []
  candidates = [i for i in range(len(pool)) if not (same_pool and i == index)]
  rng = random.Random(seed * 1_000_003 + index)
  return [pool[i] for i in rng.sample(candidates, min(k, len(candidates)))]


def fewshot_prompt(spec: TaskSpec, example: Example, shots: Sequence[Example]) -> str:
  """Shots as `prompt{target_delimiter}answer`, joined by `fewshot_delimiter`, then the query.

  The query ends without the target delimiter: like lm-evaluation-harness, the delimiter belongs
  to the continuation (choice variants include the space-prefixed label).
  """
  parts = [s.prompt + spec.target_delimiter + s.target for s in shots]
  return spec.fewshot_delimiter.join(parts + [example.prompt])


def chat_messages(example: Example) -> list[dict]:
  return [{"role": "user", "content": example.prompt}]


def build_prompts(
    spec: TaskSpec,
    examples: Sequence[Example],
    *,
    shots_pool: Sequence[Example],
    same_pool: bool,
    render_chat: RenderChat | None = None,
    seed: int = 0,
) -> list[str]:
  """Prompt texts for every example: chat-rendered zero-shot when `render_chat` is given, else
  `spec.num_fewshot`-shot."""
  if render_chat is not None:
    return [render_chat(chat_messages(e)) for e in examples]
  return [
      fewshot_prompt(spec, e, select_shots(shots_pool, spec.num_fewshot, i, seed, same_pool))
      for i, e in enumerate(examples)
  ]
