"""`messages -> prompt text` for a tokenizer, through `langshift.tokenization.chat_templates`
(byte-identical to `transformers`' `apply_chat_template(..., tokenize=False)`)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

from langshift.tokenization.chat_templates import render_chat


def _render(template: str, special_tokens_map: dict, messages: Sequence[dict]) -> str:
  return render_chat(
      messages, template, special_tokens_map=special_tokens_map, add_generation_prompt=True
  )


def chat_renderer(tokenizer) -> Callable[[Sequence[dict]], str]:
  """Renders conversations with the tokenizer's chat template, ending in the assistant prompt."""
  template = getattr(tokenizer, "chat_template", None)
  if not template:
    raise ValueError(
        "the tokenizer has no chat template; instruct-protocol prompts need one (a base model: "
        "set data.chat_template, or the role's chat_template)"
    )
  return functools.partial(_render, template, dict(getattr(tokenizer, "special_tokens_map", {})))
