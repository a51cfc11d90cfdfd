"""Records -> rendered text plus the character spans that carry loss, one function per recipe.

A formatter returns `(text, loss_spans)`: `loss_spans` are `[start, end)` character ranges whose
tokens are trained, or None for the whole sequence. Token masks are made from them in
`langshift.data.examples`, on the tokenization of the whole string.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from langshift.data.sources import RecordError
from langshift.tokenization import chat_templates

Span = tuple[int, int]
Formatted = tuple[str, list[Span] | None]


def empty_turn_messages(reply: str) -> list[dict[str, str]]:
  """An empty user turn followed by `reply` as the assistant turn (InsCP; response tuning)."""
  return [{"role": "user", "content": ""}, {"role": "assistant", "content": reply}]


def pair_messages(prompt: str, response: str) -> list[dict[str, str]]:
  return [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]


def format_chat(
    messages: Sequence[Mapping[str, Any]],
    template: str,
    special_tokens_map: Mapping[str, str],
    *,
    full_loss: bool = False,
) -> Formatted:
  """Supervised fine-tuning: loss on the assistant turns (end-of-turn token included)."""
  text, spans = chat_templates.render_with_assistant_spans(
      messages, template, special_tokens_map=special_tokens_map
  )
  if not spans and not full_loss:
    raise chat_templates.ChatTemplateError("conversation has no assistant turn to train on")
  return text, None if full_loss else spans


def format_inscp(
    text: str,
    template: str,
    special_tokens_map: Mapping[str, str],
    *,
    newline_after_header: bool | None = None,
    mask_header: bool = False,
) -> Formatted:
  """InsCP (Chen & Lee 2024, arXiv:2405.20175): `text` as the assistant reply behind an empty
  user turn.

  Plain causal-LM loss on the whole sequence by default; `mask_header=True` (the ablation) trains
  only the reply and its end-of-turn token. `newline_after_header`: None renders what the template
  renders, False strips the newlines ending the assistant header, True ends it with at least one.
  """
  rendered, spans = chat_templates.render_with_assistant_spans(
      empty_turn_messages(text), template, special_tokens_map=special_tokens_map
  )
  start = spans[0][0]
  header, reply = rendered[:start], rendered[start:]
  if newline_after_header is False:
    header = header.rstrip("\n")
  elif newline_after_header is True and not header.endswith("\n"):
    header += "\n"
  text = header + reply
  return text, [(len(header), len(text))] if mask_header else None


def format_response_tuning(
    response: str, template: str, special_tokens_map: Mapping[str, str]
) -> Formatted:
  """Response tuning (Hewitt et al. 2024): empty instruction, loss on the response."""
  return format_chat(empty_turn_messages(response), template, special_tokens_map)


def record_field(record: Mapping[str, Any], field: str, where: str, kind=str):
  if field not in record:
    raise RecordError(f"{where}: record has no field {field!r} (it has {sorted(record)})")
  value = record[field]
  if kind is list and isinstance(value, str):  # messages stored as a JSON string (TFDS, CSV)
    try:
      value = json.loads(value)
    except ValueError as e:
      raise RecordError(f"{where}: field {field!r} is not valid JSON: {e}") from None
  if not isinstance(value, kind):
    expected = getattr(kind, "__name__", None) or "/".join(k.__name__ for k in kind)
    raise RecordError(f"{where}: field {field!r} is {type(value).__name__}, expected {expected}")
  return value


def format_record(
    record: Mapping[str, Any],
    where: str,
    src,
    template: str | None,
    special_tokens_map: Mapping[str, str],
    inscp,
) -> Formatted:
  """Formats one record of a (resolved) source config whose `template` is not "none"."""
  loss = src.loss
  try:
    if src.template == "chat":
      messages = record_field(record, src.messages_field, where, list)
      return format_chat(messages, template, special_tokens_map, full_loss=loss == "all")
    if src.template == "pair":
      messages = pair_messages(
          record_field(record, src.prompt_field, where),
          record_field(record, src.response_field, where),
      )
      return format_chat(messages, template, special_tokens_map, full_loss=loss == "all")
    if src.template == "response":
      messages = empty_turn_messages(record_field(record, src.response_field, where))
      return format_chat(messages, template, special_tokens_map, full_loss=loss == "all")
    if src.template == "inscp":
      return format_inscp(
          record_field(record, src.text_field, where),
          template,
          special_tokens_map,
          newline_after_header=inscp.newline_after_header,
          mask_header=inscp.mask_header or loss == "assistant",
      )
  except chat_templates.ChatTemplateError as e:
    raise chat_templates.ChatTemplateError(f"{where}: {e}") from None
  raise ValueError(f"source {src.name}: template {src.template!r} has no record formatter")
