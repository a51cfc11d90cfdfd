"""Chat templates rendered exactly as `transformers.apply_chat_template` renders them.

A template is a jinja string, from the tokenizer (`tokenizer_config.json` / `chat_template.jinja`)
or one of the built-ins below (each written to match the model family's published template;
`tests/data/test_chat_templates.py` checks them against `transformers`). Rendering uses the jinja
environment transformers uses (sandboxed, `trim_blocks`, `lstrip_blocks`, `loopcontrols`, its
`tojson`, `raise_exception`, `strftime_now`), so the strings are byte-identical.

Assistant spans, the characters a supervised loss trains on, are found by rendering prefixes of
the conversation: assistant turn i spans from the end of `render(messages[:i],
add_generation_prompt=True)` to the end of `render(messages[:i + 1])`. That is exactly what the
model produces at inference after the generation prompt, end-of-turn token included. Templates for
which a prefix does not render as a prefix of the whole conversation (e.g. ones that rewrite
earlier turns) are refused with `ChatTemplateError`: a mask we cannot prove is not emitted.
"""

from __future__ import annotations

import datetime
import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

Message = Mapping[str, Any]
Span = tuple[int, int]

_HEADER_LLAMA3 = "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"

# Built-in templates (jinja), for tokenizers that ship none or to force a format.
BUILTIN_TEMPLATES: dict[str, str] = {
    # <|begin_of_text|><|start_header_id|>{role}<|end_header_id|>\n\n{content.strip()}<|eot_id|>
    "llama3": (
        "{{ bos_token }}"
        "{% for message in messages %}"
        "{{ " + _HEADER_LLAMA3 + " + message['content'] | trim + '<|eot_id|>' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}"
        "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
        "{% endif %}"
    ),
    # <s>[INST] {user} [/INST]{assistant}</s>; no system role (Mistral instruct v0.1/v0.2).
    "mistral": (
        "{{ bos_token }}"
        "{% for message in messages %}"
        "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('Conversation roles must alternate "
        "user/assistant/user/assistant/...') }}"
        "{% endif %}"
        "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
        "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
        "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}"
        "{% endif %}"
        "{% endfor %}"
    ),
    # <s>GPT4 Correct User: {user}<|end_of_turn|>GPT4 Correct Assistant: {assistant}<|end_of_turn|>
    "openchat": (
        "{{ bos_token }}"
        "{% for message in messages %}"
        "{% if message['role'] not in ['user', 'assistant'] %}"
        "{{ raise_exception('Only user and assistant roles are supported!') }}"
        "{% endif %}"
        "{{ 'GPT4 Correct ' + message['role'] | title + ': ' + message['content'] "
        "+ '<|end_of_turn|>' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ 'GPT4 Correct Assistant:' }}{% endif %}"
    ),
    # <s><|user|>\n{instruction}\n<|assistant|>\n{response}</s>\n
    "tulu": (
        "{{ bos_token }}"
        "{% for message in messages %}"
        "{% if message['role'] == 'system' %}{{ '<|system|>\\n' + message['content'] + '\\n' }}"
        "{% elif message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + '\\n' }}"
        "{% elif message['role'] == 'assistant' %}"
        "{{ '<|assistant|>\\n' + message['content'] + eos_token + '\\n' }}"
        "{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
    ),
    # <|im_start|>{role}\n{content}<|im_end|>\n (Qwen2, SmolLM2)
    "chatml": (
        "{% for message in messages %}"
        "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    ),
}


class ChatTemplateError(ValueError):
  """A conversation cannot be rendered, or its assistant spans cannot be located."""


def resolve_chat_template(name: str | None, tokenizer_template: str | None) -> str:
  """`name` is "tokenizer" (or None), a built-in name, or a literal jinja template."""
  if name in (None, "", "tokenizer"):
    if tokenizer_template is None:
      raise ChatTemplateError(
          "the tokenizer has no chat_template; set data.chat_template to one of "
          f"{sorted(BUILTIN_TEMPLATES)} or to a jinja string"
      )
    return tokenizer_template
  if name in BUILTIN_TEMPLATES:
    return BUILTIN_TEMPLATES[name]
  if "{%" in name or "{{" in name:
    return name
  raise ChatTemplateError(
      f"unknown chat template {name!r}: expected 'tokenizer', one of "
      f"{sorted(BUILTIN_TEMPLATES)}, or a jinja template string"
  )


@functools.lru_cache(maxsize=32)
def compile_chat_template(source: str):
  """Compiles `source` in the jinja environment transformers renders chat templates in."""
  import jinja2  # pylint: disable=import-outside-toplevel
  import jinja2.ext  # pylint: disable=import-outside-toplevel
  from jinja2.sandbox import ImmutableSandboxedEnvironment  # pylint: disable=import-outside-toplevel

  class GenerationBlock(jinja2.ext.Extension):
    """Accepts `{% generation %}...{% endgeneration %}` (transformers' assistant tracker), renders
    its body unchanged; spans come from prefix rendering either way."""

    tags = {"generation"}

    def parse(self, parser):
      lineno = next(parser.stream).lineno
      body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
      return jinja2.nodes.CallBlock(self.call_method("_render_body"), [], [], body).set_lineno(
          lineno
      )

    def _render_body(self, caller):
      return caller()

  def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)

  def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # transformers' tojson: no HTML escaping, non-ASCII kept.
    return json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )

  def strftime_now(fmt):
    return datetime.datetime.now().strftime(fmt)

  env = ImmutableSandboxedEnvironment(
      trim_blocks=True, lstrip_blocks=True, extensions=[GenerationBlock, jinja2.ext.loopcontrols]
  )
  env.filters["tojson"] = tojson
  env.globals["raise_exception"] = raise_exception
  env.globals["strftime_now"] = strftime_now
  return env.from_string(source)


def render_chat(
    messages: Sequence[Message],
    template: str,
    *,
    special_tokens_map: Mapping[str, str] | None = None,
    add_generation_prompt: bool = False,
    **template_kwargs,
) -> str:
  """The string `apply_chat_template(messages, tokenize=False, ...)` returns."""
  import jinja2  # pylint: disable=import-outside-toplevel
  # As transformers does: None-valued keys are dropped, special tokens are template variables.
  messages = [{k: v for k, v in m.items() if v is not None} for m in messages]
  variables = {**(special_tokens_map or {}), **template_kwargs}
  try:
    return compile_chat_template(template).render(
        messages=messages,
        tools=variables.pop("tools", None),
        documents=variables.pop("documents", None),
        add_generation_prompt=add_generation_prompt,
        **variables,
    )
  except jinja2.exceptions.TemplateError as e:
    raise ChatTemplateError(f"chat template failed on {_summary(messages)}: {e}") from e


_TURN_PROBE = "LangshiftAssistantTurnProbe"


def assistant_turn_end(
    template: str,
    special_tokens: Sequence[str],
    special_tokens_map: Mapping[str, str] | None = None,
) -> str | None:
  """The special token that closes an assistant turn in `template` (Llama-3's `<|eot_id|>`,
  ChatML's `<|im_end|>`, Mistral's `</s>`), or None when the turn ends in plain text.

  A model tuned in a template learns to end its answers with that token, so generation must stop
  on it: a base checkpoint's own EOS (Llama-3's `<|end_of_text|>`) is not it.
  """
  messages = [{"role": "user", "content": "u"}, {"role": "assistant", "content": _TURN_PROBE}]
  try:
    text = render_chat(messages, template, special_tokens_map=special_tokens_map)
  except ChatTemplateError:
    return None
  rest = text.split(_TURN_PROBE, 1)[1].lstrip(" ") if _TURN_PROBE in text else ""
  ends = [t for t in special_tokens if t and rest.startswith(t)]
  return max(ends, key=len) if ends else None


def render_with_assistant_spans(
    messages: Sequence[Message],
    template: str,
    *,
    special_tokens_map: Mapping[str, str] | None = None,
    **template_kwargs,
) -> tuple[str, list[Span]]:
  """Renders a conversation and returns `[start, end)` character spans of each assistant turn.

  Raises `ChatTemplateError` when a span cannot be located (see module docstring).
  """
  render = functools.partial(
      render_chat, template=template, special_tokens_map=special_tokens_map, **template_kwargs
  )
  text = render(messages)
  spans = []
  for i, message in enumerate(messages):
    if message.get("role") != "assistant":
      continue
    if i == 0:
      raise ChatTemplateError(
          f"cannot locate the assistant span of {_summary(messages)}: a "
          "conversation must not start with an assistant turn"
      )
    prompt = render(messages[:i], add_generation_prompt=True)
    turn = render(messages[: i + 1])
    if not (turn.startswith(prompt) and text.startswith(turn)):
      raise ChatTemplateError(
          f"cannot locate the assistant span of turn {i} in {_summary(messages)}: the template "
          "does not render a conversation prefix (plus generation prompt) as a prefix of the whole "
          "conversation, so the assistant tokens cannot be told from the prompt"
      )
    content = message.get("content")
    if isinstance(content, str) and content.strip() not in turn[len(prompt) :]:
      raise ChatTemplateError(
          f"cannot locate the assistant span of turn {i} in {_summary(messages)}: its content does "
          "not appear after the generation prompt"
      )
    spans.append((len(prompt), len(turn)))
  return text, spans


def _summary(messages) -> str:
  roles = [m.get("role") for m in messages]
  return f"a conversation with roles {roles}"
