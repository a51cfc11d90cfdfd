"""A per-id view of a tokenizer's vocabulary, for matching tokens across tokenizers.

Tokens are compared by their *surface*: the bytes they decode to. Byte-level BPE stores `Ġп`
where SentencePiece stores `▁п`; both are b" \xd0\xbf". Special tokens have no surface and are
matched by their content string. `decompose` re-tokenizes a surface with a tokenizer's model
directly: going through `encode` would add SentencePiece's dummy prefix to a word-internal piece.
"""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
from tokenizers import Tokenizer

from langshift.tokenization import byte_level
from langshift.tokenization.tokenizer_files import to_tokenizer

SPACE = "▁"
BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
KINDS = ("byte_level", "metaspace", "plain")


@dataclasses.dataclass(frozen=True)
class Vocabulary:
  tokenizer: Tokenizer
  kind: str  # one of KINDS: how model tokens spell their bytes
  tokens: list[str | None]  # content by id; None where no token has that id
  surfaces: list[bytes | None]  # decoded bytes by id; None for special tokens and gaps
  special: np.ndarray  # [size] bool: added tokens flagged special
  model_vocab: dict[str, int]  # the model's own tokens (not added tokens)
  unk_id: int | None

  @property
  def size(self) -> int:
    """Rows an embedding matrix needs: largest id + 1."""
    return len(self.tokens)


def _component_types(node) -> list[str]:
  if isinstance(node, dict):
    found = [node["type"]] if "type" in node else []
    for value in node.values():
      found += _component_types(value)
    return found
  if isinstance(node, list):
    return [t for item in node for t in _component_types(item)]
  return []


def tokenizer_kind(tokenizer_json: dict) -> str:
  types = set(
      _component_types([tokenizer_json.get("pre_tokenizer"), tokenizer_json.get("decoder")])
  )
  if "ByteLevel" in types:
    return "byte_level"
  spelled = json.dumps(
      [tokenizer_json.get(k) for k in ("normalizer", "pre_tokenizer", "decoder")],
      ensure_ascii=False,
  )
  if "Metaspace" in types or SPACE in spelled:
    return "metaspace"
  return "plain"


def token_surface(token: str, kind: str) -> bytes:
  if kind == "byte_level":
    try:
      return byte_level.byte_level_to_bytes(token)
    except KeyError:
      return token.encode("utf-8")
  if kind == "metaspace":
    match = BYTE_PIECE.match(token)
    if match:
      return bytes([int(match.group(1), 16)])
    return token.replace(SPACE, " ").encode("utf-8")
  return token.encode("utf-8")


def vocabulary(tokenizer: Tokenizer | dict | str) -> Vocabulary:
  tokenizer = to_tokenizer(tokenizer)
  spec = json.loads(tokenizer.to_str())
  kind = tokenizer_kind(spec)
  model_vocab = tokenizer.get_vocab(with_added_tokens=False)
  added = tokenizer.get_added_tokens_decoder()
  size = 1 + max(list(model_vocab.values()) + list(added.keys()))
  tokens: list[str | None] = [None] * size
  surfaces: list[bytes | None] = [None] * size
  special = np.zeros(size, bool)
  for token, i in model_vocab.items():
    tokens[i], surfaces[i] = token, token_surface(token, kind)
  for i, added_token in added.items():
    tokens[i] = added_token.content
    special[i] = added_token.special
    # Added tokens are matched in raw text, so their surface is their content as written.
    surfaces[i] = None if added_token.special else added_token.content.encode("utf-8")
  unk = spec.get("model", {}).get("unk_token")
  unk_id = (
      spec["model"].get("unk_id")
      if spec["model"]["type"] == "Unigram"
      else (model_vocab.get(unk) if unk is not None else None)
  )
  return Vocabulary(tokenizer, kind, tokens, surfaces, special, model_vocab, unk_id)


def decompose(vocab: Vocabulary, surface: bytes) -> list[int]:
  """Ids `vocab`'s tokenizer spells `surface` with, <unk> dropped (LEP's mean-of-sub-tokens
  embedding initialisation, Tikhomirov & Chernyshev 2024, arXiv:2412.21140)."""
  tok = vocab.tokenizer
  if vocab.kind == "byte_level":
    ids = _decompose_byte_level(tok, surface)
  elif vocab.kind == "metaspace":
    ids = _decompose_metaspace(tok, surface)
  else:
    ids = tok.encode(surface.decode("utf-8", "replace"), add_special_tokens=False).ids
  return [i for i in ids if i != vocab.unk_id]


def _model_ids(tok: Tokenizer, text: str) -> list[int]:
  return [t.id for t in tok.model.tokenize(text)] if text else []


def _decompose_byte_level(tok: Tokenizer, surface: bytes) -> list[int]:
  try:
    text = surface.decode("utf-8")
  except UnicodeDecodeError:  # a partial character: only the BPE itself can spell it
    return _model_ids(tok, byte_level.bytes_to_byte_level(surface))
  if tok.normalizer is not None:
    text = tok.normalizer.normalize_str(text)
  if tok.pre_tokenizer is None:
    return _model_ids(tok, byte_level.bytes_to_byte_level(text.encode("utf-8")))
  return [
      i for piece, _ in tok.pre_tokenizer.pre_tokenize_str(text) for i in _model_ids(tok, piece)
  ]


def _decompose_metaspace(tok: Tokenizer, surface: bytes) -> list[int]:
  ids: list[int] = []
  run: list[str] = []
  for char in surface.decode("utf-8", "surrogateescape"):
    if "\udc80" <= char <= "\udcff":  # an undecodable byte: the byte-fallback piece, if any
      ids += _model_ids(tok, "".join(run).replace(" ", SPACE))
      run = []
      byte_id = tok.token_to_id(f"<0x{ord(char) - 0xDC00:02X}>")
      ids += [byte_id] if byte_id is not None else []
    else:
      run.append(char)
  return ids + _model_ids(tok, "".join(run).replace(" ", SPACE))
