"""Shrinking a byte-level BPE to its first N tokens (the base of LEP's "Optimized" variant).

BPE merges are learned most-frequent first, so the first merges are the tokens worth keeping.
Walking the merges in order and keeping a merge only when both halves are kept keeps every kept
token producible. Ids are renumbered densely: kept model tokens in their old order, then the
added (special) tokens; embedding rows follow by token string (`build_vocabulary_map`).
"""

from __future__ import annotations

import copy

from langshift.tokenization.extension import read_merges, write_merges
from langshift.tokenization.vocabulary import tokenizer_kind


def shrink_byte_level_bpe(tokenizer_json: dict, vocab_size: int) -> dict:
  """Keeps the single-byte alphabet and the results of the first merges, `vocab_size` model
  tokens in all (added tokens come on top). Returns a new tokenizer.json with dense ids."""
  spec = copy.deepcopy(tokenizer_json)
  model = spec["model"]
  if model["type"] != "BPE" or tokenizer_kind(spec) != "byte_level":
    raise ValueError("shrink_byte_level_bpe needs a byte-level BPE tokenizer.json")
  vocab: dict[str, int] = model["vocab"]
  kept = {token for token in vocab if len(token) == 1}
  if vocab_size < len(kept):
    raise ValueError(f"vocab_size {vocab_size} is below the {len(kept)}-symbol alphabet")
  kept_merges = []
  for left, right in read_merges(model):
    if len(kept) >= vocab_size and left + right not in kept:
      continue
    if left in kept and right in kept and left + right in vocab:
      kept_merges.append((left, right))
      kept.add(left + right)

  order = sorted(kept, key=vocab.__getitem__)
  new_vocab = {token: i for i, token in enumerate(order)}
  added = sorted(spec.get("added_tokens", []), key=lambda t: t["id"])
  new_id = {old: i for i, old in enumerate(vocab[t] for t in order)}
  appended = 0
  for token in added:
    token_id = new_vocab.get(token["content"])
    if token_id is None:
      token_id, appended = len(order) + appended, appended + 1
    new_id[token["id"]] = token_id
    token["id"] = token_id
  model["vocab"] = new_vocab
  model["merges"] = write_merges(kept_merges, model["merges"])
  _remap_ids(spec.get("post_processor"), new_id)
  if spec.get("padding"):
    spec["padding"]["pad_id"] = new_id.get(spec["padding"]["pad_id"], 0)
  return spec


def _remap_ids(node, new_id: dict[int, int]) -> None:
  """Post-processors cache special-token ids (TemplateProcessing `ids`, Roberta `sep`/`cls`)."""
  if isinstance(node, dict):
    if isinstance(node.get("ids"), list):
      node["ids"] = [new_id[i] for i in node["ids"]]
    for key in ("sep", "cls"):
      if isinstance(node.get(key), list) and len(node[key]) == 2:
        node[key][1] = new_id[node[key][1]]
    for key, value in node.items():
      if key not in ("ids", "sep", "cls"):
        _remap_ids(value, new_id)
  elif isinstance(node, list):
    for item in node:
      _remap_ids(item, new_id)
