"""Prompt construction for both protocols (Darumeru's: base models k-shot, instruct models
zero-shot through the chat template; Tikhomirov & Chernyshev 2024, arXiv:2412.21140).

Base protocol: demonstrations as `prompt{target_delimiter}answer` (or a conversation's turns joined
by blank lines), joined by `fewshot_delimiter`, then the query. Instruct protocol: the chat
template renders the conversation, demonstrations as earlier user/assistant turns (lm-eval's
`fewshot_as_multiturn`), and an assistant turn the record opens ("Ответ:") is appended after the
generation prompt.

A query never ends with the target delimiter: as in lm-evaluation-harness the delimiter belongs
to the answer continuation (`answer_delimiter`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from langshift.evaluation.tasks import Example, TaskSpec

RenderChat = Callable[[Sequence[dict]], str]
# Base-protocol rendering of a conversation: each turn's text, blank lines between turns.
TURN_SEPARATOR = "\n\n"


def select_shots(
    pool: Sequence[Example],
    k: int,
    index: int,
    seed: int,
    same_pool: bool,
    sampler: str = "random",
    query: Example | None = None,
) -> list[Example]:
  """k demonstrations for example `index` (`query`); the example itself is never its own
  demonstration when the pool is the task's own records, and a query with a `group` only gets
  demonstrations of its group. "random" is fixed by (seed, index)."""
  if k <= 0 or not pool:
    return []
  group = query.group if query is not None else None
  candidates = [
      i
      for i in range(len(pool))
      if not (same_pool and i == index) and (group is None or pool[i].group == group)
  ]
  if sampler == "random":
    rng = random.Random(seed * 1_000_003 + index)
    return [pool[i] for i in rng.sample(candidates, min(k, len(candidates)))]
  first = [pool[i] for i in candidates[:k]]
  return first[::-1] if sampler == "first_n_reversed" else first


def _system_and_turns(example: Example) -> tuple[str | None, list[dict]]:
  messages = list(example.messages or ())
  if messages and messages[0]["role"] == "system":
    return messages[0]["content"], messages[1:]
  return None, messages


def query_parts(example: Example) -> tuple[str | None, list[dict], str | None]:
  """(system text, user/assistant turns, opened answer) of an example used as the query: a
  trailing assistant turn is the start of the answer."""
  if example.messages is None:
    return None, [{"role": "user", "content": example.prompt}], None
  system, turns = _system_and_turns(example)
  if turns and turns[-1]["role"] == "assistant":
    return system, turns[:-1], turns[-1]["content"]
  return system, turns, None


def shot_turns(spec: TaskSpec, example: Example) -> list[dict]:
  """An example used as a demonstration: its turns, the answer in the last assistant turn."""
  if example.messages is None:
    return [
        {"role": "user", "content": example.prompt},
        {"role": "assistant", "content": example.target},
    ]
  turns = _system_and_turns(example)[1]
  if example.answered:
    return turns
  if turns and turns[-1]["role"] == "assistant":
    opened = turns[-1]["content"]
    delimiter = spec.target_delimiter if opened and not opened[-1:].isspace() else ""
    return turns[:-1] + [{"role": "assistant", "content": opened + delimiter + example.target}]
  return turns + [{"role": "assistant", "content": example.target}]


def shot_text(spec: TaskSpec, example: Example) -> str:
  """A demonstration as base-protocol text."""
  if example.messages is None:
    return example.prompt + spec.target_delimiter + example.target
  return _plain(shot_turns(spec, example))


def answer_delimiter(spec: TaskSpec, example: Example, chat: bool) -> str:
  """What goes between the query and an answer. Instruct protocol: nothing after the template's
  assistant prompt, the task's delimiter after an opened answer that does not end in whitespace
  (lm-eval's `gen_prefix` rule)."""
  if not chat:
    return spec.target_delimiter
  _, _, prefix = query_parts(example)
  return spec.target_delimiter if prefix and not prefix[-1:].isspace() else ""


def _plain(turns: Sequence[dict]) -> str:
  return TURN_SEPARATOR.join(t["content"] for t in turns)


def base_prompt(spec: TaskSpec, example: Example, shots: Sequence[Example]) -> str:
  """The base-protocol text: system text (the query's), shots, then the query."""
  system, turns, prefix = query_parts(example)
  query = _plain(turns + ([{"content": prefix}] if prefix is not None else []))
  body = spec.fewshot_delimiter.join([shot_text(spec, s) for s in shots] + [query])
  return system + TURN_SEPARATOR + body if system else body


def fewshot_prompt(spec: TaskSpec, example: Example, shots: Sequence[Example]) -> str:
  return base_prompt(spec, example, shots)


def chat_conversation(spec: TaskSpec, example: Example, shots: Sequence[Example]) -> list[dict]:
  """The instruct-protocol conversation up to the query's user turn (no opened answer)."""
  system, turns, _ = query_parts(example)
  messages = [{"role": "system", "content": system}] if system else []
  for shot in shots:
    messages += shot_turns(spec, shot)
  return messages + turns


def chat_messages(example: Example) -> list[dict]:
  return chat_conversation(TaskSpec(name="-", type="choice", path="-"), example, ())


def chat_prompt(
    spec: TaskSpec, example: Example, shots: Sequence[Example], render_chat: RenderChat
) -> str:
  """The rendered conversation ending in the assistant prompt, plus any opened answer."""
  _, _, prefix = query_parts(example)
  return render_chat(chat_conversation(spec, example, shots)) + (prefix or "")


def build_prompts(
    spec: TaskSpec,
    examples: Sequence[Example],
    *,
    shots_pool: Sequence[Example],
    same_pool: bool,
    render_chat: RenderChat | None = None,
    seed: int = 0,
    num_fewshot: int | None = None,
) -> list[str]:
  """Prompt texts for every example: through the chat template when `render_chat` is given, else
  plain text. Demonstrations: `num_fewshot` when given, else the task's `num_fewshot` for the
  base protocol and none for the instruct protocol."""
  if num_fewshot is None:
    num_fewshot = 0 if render_chat is not None else spec.num_fewshot
  out = []
  for i, example in enumerate(examples):
    shots = select_shots(
        shots_pool, num_fewshot, i, seed, same_pool, spec.fewshot_sampler, query=example
    )
    if render_chat is not None:
      out.append(chat_prompt(spec, example, shots, render_chat))
    else:
      out.append(base_prompt(spec, example, shots))
  return out


def build_conversations(
    spec: TaskSpec,
    examples: Sequence[Example],
    *,
    shots_pool: Sequence[Example],
    same_pool: bool,
    seed: int = 0,
    num_fewshot: int | None = None,
) -> list[list[dict]]:
  """Instruct-protocol conversations (for a chat endpoint); no example may open its answer."""
  out = []
  for i, example in enumerate(examples):
    shots = select_shots(
        shots_pool, num_fewshot or 0, i, seed, same_pool, spec.fewshot_sampler, query=example
    )
    out.append(chat_conversation(spec, example, shots))
  return out
