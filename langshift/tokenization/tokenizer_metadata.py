"""The one reader of a tokenizer directory's metadata: special tokens, chat templates, EOS ids.

`load_tokenizer` (training, generation, evaluation) and the LEP tokenizer surgery
(`tokenizer_files.read_tokenizer_config`) both read a directory through `read_tokenizer_metadata`,
so they see the same chat template and special tokens for it; and those are the ones
`transformers.AutoTokenizer.from_pretrained(directory)` sees. Its rules, as read in transformers
5.24 `tokenization_utils_base.py` (`PreTrainedTokenizerBase`; line numbers of that version):

Chat templates (`_from_pretrained`, "If independent chat template file(s) exist, they take
priority over template entries in the tokenizer config", l. 1822-1839; files listed l. 1672 and
1700-1707):
  1. `chat_template.jinja` is the template named "default", and every
     `additional_chat_templates/NAME.jinja` the template NAME. If any of these files exists they
     replace the config's `chat_template` field entirely (its named templates are dropped too).
  2. Otherwise the `chat_template` field of tokenizer_config.json: a string (the default), or a
     list of `{"name": ..., "template": ...}` (`__init__`, l. 1093-1097), or a {name: template}
     dict.
  3. `apply_chat_template` without tools renders the "default" template (`get_chat_template`,
     l. 3360-3370; "tool_use" is chosen only when tools are passed).

Special tokens:
  1. tokenizer_config.json's `bos_token`, `eos_token`, ... (strings or AddedToken dicts).
  2. special_tokens_map.json is read only when the config has no `added_tokens_decoder`; then
     each of its entries *overrides* the config's (not merely a fallback; l. 1889-1920), an
     `extra_special_tokens` list being merged instead.
  3. Extra special tokens: `extra_special_tokens` when non-empty, else the deprecated
     `additional_special_tokens` (l. 1850-1852, l. 1011-1013); a dict's values count, and so do
     other string-valued `*_token` keys (`image_token`, l. 1054-1062).

`eos_token_id` of generation_config.json (an int or a list: Llama-3-Instruct stops on
`<|end_of_text|>` and `<|eot_id|>`) is what `model.generate` stops on.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from typing import Any

TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
CHAT_TEMPLATE_DIR = "additional_chat_templates"
GENERATION_CONFIG = "generation_config.json"
DEFAULT_TEMPLATE = "default"

# Named special tokens, in the order transformers lists them (`SPECIAL_TOKENS_ATTRIBUTES`). They
# are also the variables a jinja chat template sees (`bos_token`, `eos_token`, ...).
NAMED_SPECIAL_TOKENS = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)


@dataclasses.dataclass(frozen=True)
class TokenizerMetadata:
  """What a tokenizer directory says besides its vocabulary, resolved as transformers does."""

  # tokenizer_config.json as stored (model_max_length, add_bos_token, ...); {} when absent.
  config: dict[str, Any]
  # Named special tokens that are set -> their strings ({"bos_token": "<s>", ...}).
  special_tokens_map: dict[str, str]
  # Other special-token strings (extra/additional special tokens, `image_token`, ...).
  extra_special_tokens: tuple[str, ...]
  # Template name -> jinja source; the one `apply_chat_template` uses is "default".
  chat_templates: dict[str, str]
  # generation_config.json's `eos_token_id`, as a tuple.
  generation_eos_ids: tuple[int, ...]

  @property
  def chat_template(self) -> str | None:
    """The template `apply_chat_template(messages)` renders (no tools), or None."""
    return self.chat_templates.get(DEFAULT_TEMPLATE)

  @property
  def chat_template_field(self) -> str | list[dict[str, str]] | None:
    """`chat_template` for a tokenizer_config.json that must load to the same templates: the
    string when there is only a default, else transformers' list of named templates."""
    if not self.chat_templates:
      return None
    if list(self.chat_templates) == [DEFAULT_TEMPLATE]:
      return self.chat_templates[DEFAULT_TEMPLATE]
    return [{"name": k, "template": v} for k, v in self.chat_templates.items()]


def read_tokenizer_metadata(directory: str) -> TokenizerMetadata:
  """Reads `directory`'s tokenizer_config.json, special_tokens_map.json, chat template files and
  generation_config.json; missing files count as empty."""
  config = _read_json(os.path.join(directory, TOKENIZER_CONFIG))
  merged = _special_token_entries(directory, config)
  named = {}
  for name in NAMED_SPECIAL_TOKENS:
    content = special_token_content(merged.get(name))
    if content is not None:
      named[name] = content
  extra = merged.get("extra_special_tokens") or []
  extra = list(extra.values()) if isinstance(extra, dict) else list(extra)
  extra += [
      v
      for k, v in merged.items()
      if k.endswith("_token") and k not in NAMED_SPECIAL_TOKENS and _is_token(v)
  ]
  extra_strings = (special_token_content(t) for t in extra)
  return TokenizerMetadata(
      config=config,
      special_tokens_map=named,
      extra_special_tokens=tuple(dict.fromkeys(t for t in extra_strings if t is not None)),
      chat_templates=_chat_templates(directory, config.get("chat_template")),
      generation_eos_ids=_generation_eos_ids(directory),
  )


def _special_token_entries(directory: str, config: dict[str, Any]) -> dict[str, Any]:
  """The config's entries with special_tokens_map.json merged in, and `extra_special_tokens` set
  to the extra tokens' list or dict, in transformers' order of steps."""
  merged = dict(config)
  if "additional_special_tokens" in merged and not merged.get("extra_special_tokens"):
    merged["extra_special_tokens"] = merged.pop("additional_special_tokens")
  if "added_tokens_decoder" not in config:
    for key, value in _read_json(os.path.join(directory, SPECIAL_TOKENS_MAP)).items():
      if key == "extra_special_tokens" and isinstance(value, list):
        value = list(merged.get("extra_special_tokens") or []) + value
      merged[key] = value
  if "extra_special_tokens" not in merged:
    # A legacy map's additional_special_tokens count only when the config named no extras.
    merged["extra_special_tokens"] = merged.get("additional_special_tokens")
  return merged


def special_token_content(value) -> str | None:
  """A special token's string: configs store them as strings or as AddedToken dicts."""
  if isinstance(value, dict):
    return value.get("content")
  return value


def _is_token(value) -> bool:
  return isinstance(value, str) or (isinstance(value, dict) and "content" in value)


def _chat_templates(directory: str, field) -> dict[str, str]:
  files = {}
  if os.path.isfile(os.path.join(directory, CHAT_TEMPLATE_FILE)):
    files[DEFAULT_TEMPLATE] = _read_text(os.path.join(directory, CHAT_TEMPLATE_FILE))
  # Sorted: transformers globs in directory order; the names, not the order, matter.
  for path in sorted(glob.glob(os.path.join(directory, CHAT_TEMPLATE_DIR, "*.jinja"))):
    files[os.path.basename(path).removesuffix(".jinja")] = _read_text(path)
  if files:
    return files
  if field is None:
    return {}
  if isinstance(field, str):
    return {DEFAULT_TEMPLATE: field}
  if isinstance(field, dict):
    return dict(field)
  return {t["name"]: t["template"] for t in field}


def _generation_eos_ids(directory: str) -> tuple[int, ...]:
  value = _read_json(os.path.join(directory, GENERATION_CONFIG)).get("eos_token_id")
  if value is None:
    return ()
  return tuple(int(i) for i in (value if isinstance(value, list) else [value]))


def _read_json(path: str) -> dict[str, Any]:
  if not os.path.exists(path):
    return {}
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _read_text(path: str) -> str:
  with open(path, encoding="utf-8") as f:
    return f.read()
