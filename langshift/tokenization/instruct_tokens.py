"""Giving an adapted tokenizer the instruct model's chat tokens and template (LEP's propagation into
the instruct model: Tikhomirov & Chernyshev 2024, arXiv:2412.21140).

The propagated instruct model speaks the new vocabulary, but it must still end turns with its
own chat tokens (`<|eot_id|>`, `<|im_end|>`, ...): they are looked up by content in the new
tokenizer and appended after its last id where missing; their embedding rows are then copied
from the instruct model (`propagate_embedding_rows(special_rows=...)`).
"""

from __future__ import annotations

import copy
import dataclasses

from langshift.tokenization.extension import next_free_id
from langshift.tokenization.tokenizer_files import (
    SPECIAL_TOKEN_KEYS,
    model_token_ids,
    read_tokenizer_json,
    write_tokenizer_dir,
)
from langshift.tokenization.tokenizer_metadata import read_tokenizer_metadata


@dataclasses.dataclass(frozen=True)
class InstructTokens:
  tokenizer_json: dict
  special_rows: list[tuple[int, int]]  # (new id, instruct id): embedding rows to copy
  special_ids: dict[str, int]  # bos_token/eos_token/... -> new id, for the model config


def add_instruct_special_tokens(
    tokenizer_json: dict,
    instruct_tokenizer_json: dict,
) -> tuple[dict, list[tuple[int, int]]]:
  """Every special added token of the instruct tokenizer, found or appended in the new one."""
  spec = copy.deepcopy(tokenizer_json)
  by_content = model_token_ids(spec)
  by_content.update({t["content"]: t["id"] for t in spec.get("added_tokens", [])})
  next_id = next_free_id(spec)
  rows = []
  for token in sorted(instruct_tokenizer_json.get("added_tokens", []), key=lambda t: t["id"]):
    if not token.get("special", False):
      continue
    new_id = by_content.get(token["content"])
    if new_id is None:
      new_id, next_id = next_id, next_id + 1
      spec.setdefault("added_tokens", []).append({**token, "id": new_id})
      by_content[token["content"]] = new_id
    elif token["content"] not in {t["content"] for t in spec.get("added_tokens", [])}:
      # A model token that the instruct tokenizer treats as special: mark it so in text.
      spec.setdefault("added_tokens", []).append({**token, "id": new_id})
    rows.append((new_id, token["id"]))
  return spec, rows


def write_instruct_tokenizer(
    directory: str,
    tokenizer_json: dict,
    instruct_dir: str,
) -> InstructTokens:
  """Writes the adapted tokenizer with the instruct model's special tokens, chat template and
  bos/eos/unk/pad strings to `directory`; returns the rows to copy and the special ids."""
  instruct_json = read_tokenizer_json(instruct_dir)
  metadata = read_tokenizer_metadata(instruct_dir)
  spec, rows = add_instruct_special_tokens(tokenizer_json, instruct_json)
  by_content = model_token_ids(spec)
  by_content.update({t["content"]: t["id"] for t in spec.get("added_tokens", [])})
  names = {
      k: v
      for k, v in metadata.special_tokens_map.items()
      if k in SPECIAL_TOKEN_KEYS and v in by_content
  }
  # Every named template (tool_use too), so the new directory renders what the instruct one does.
  write_tokenizer_dir(
      directory,
      spec,
      chat_template=metadata.chat_template_field,
      model_max_length=metadata.config.get("model_max_length"),
      **names,
  )
  return InstructTokens(spec, rows, {k: by_content[v] for k, v in names.items()})
