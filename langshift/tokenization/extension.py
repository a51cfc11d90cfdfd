"""Extending a tokenizer with pieces learned on target-language text (LEP "Extended": Tikhomirov &
Chernyshev 2024, arXiv:2412.21140).

Old ids never move: new tokens take the ids after the largest old id (added tokens included), so
the old embedding rows stay where they are. New merges go before the old ones (as in LEP), so
target-language words are built from the new pieces instead of being frozen into the old
segmentation by merges that fire first; text that no new merge touches tokenizes as before.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from sentencepiece import sentencepiece_model_pb2 as sp_model

from langshift.tokenization import byte_level, sentencepiece_export
from langshift.tokenization.tokenizer_files import model_token_ids, to_tokenizer
from langshift.tokenization.vocabulary import SPACE, tokenizer_kind

NORMAL = sentencepiece_export.NORMAL


def sentencepiece_pieces(model: bytes | sp_model.ModelProto) -> list[str]:
  """A SentencePiece model's learned pieces, best first (for BPE: the order they were merged)."""
  proto = sentencepiece_export.load_model_proto(model)
  normal = [(p.piece, p.score, i) for i, p in enumerate(proto.pieces) if p.type == NORMAL]
  return [piece for piece, _, _ in sorted(normal, key=lambda x: (-x[1], x[2]))]


def read_merges(model: dict) -> list[tuple[str, str]]:
  """tokenizer.json merges are "a b" strings (tokenizers < 0.20) or [a, b] pairs."""
  return [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]


def write_merges(merges: list[tuple[str, str]], like: list) -> list:
  if like and isinstance(like[0], str):
    return [f"{a} {b}" for a, b in merges]
  return [list(m) for m in merges]


def next_free_id(tokenizer_json: dict) -> int:
  ids = list(model_token_ids(tokenizer_json).values())
  ids += [t["id"] for t in tokenizer_json.get("added_tokens", [])]
  return max(ids) + 1


def extend_byte_level_bpe(
    tokenizer_json: dict,
    pieces: Sequence[str],
    *,
    max_new_tokens: int | None = None,
    new_merges_first: bool = True,
) -> dict:
  """Adds SentencePiece-spelled `pieces` (`▁` = space) to a byte-level BPE tokenizer.json.

  A piece becomes the byte-unicode spelling of its UTF-8 bytes (`▁при` -> `ĠÐ¿ÑĢÐ¸`). Pieces the
  old pre-tokenizer would split (e.g. `ого,`) or its normaliser would rewrite could never be
  produced and are skipped. Each new token gets a merge for every split of it, at character
  boundaries, into two tokens already present; a token with none (a 3-byte character whose
  2-byte prefix is unknown) is built from intermediate tokens, which count as new tokens.
  """
  spec = copy.deepcopy(tokenizer_json)
  model = spec["model"]
  if model["type"] != "BPE" or tokenizer_kind(spec) != "byte_level":
    raise ValueError("extend_byte_level_bpe needs a byte-level BPE tokenizer.json")
  vocab: dict[str, int] = model["vocab"]
  specials = {t["content"] for t in spec.get("added_tokens", [])}
  tokenizer = to_tokenizer(tokenizer_json)
  next_id = next_free_id(spec)
  added: list[tuple[str, list[int]]] = []  # (token, cuts it is built by), in order of rank
  budget = float("inf") if max_new_tokens is None else max_new_tokens

  def plan(token: str, char_cuts: list[int], planned: dict) -> None:
    """Adds to `planned` the tokens (with their merges) that building `token` needs."""

    def known(t):
      return t in vocab or t in planned

    cuts = [c for c in char_cuts if known(token[:c]) and known(token[c:])]
    if not cuts:  # no two known halves: grow the longest known prefix by the rest
      cut = max(c for c in range(1, len(token)) if known(token[:c]))
      if not known(token[cut:]):
        plan(token[cut:], list(range(1, len(token) - cut)), planned)
      cuts = [cut]
    planned[token] = cuts

  for piece in pieces:
    text = piece.replace(SPACE, " ")
    token = byte_level.bytes_to_byte_level(text.encode("utf-8"))
    if not text or token in vocab or text in specials or not _one_pretoken(tokenizer, text, token):
      continue
    planned: dict[str, list[int]] = {}
    plan(token, _char_cuts(text), planned)
    if len(planned) > budget:
      continue
    budget -= len(planned)
    for new_token, cuts in planned.items():
      vocab[new_token] = next_id
      next_id += 1
      added.append((new_token, cuts))

  # Merges go in once every new token is known, so that a token also gets the splits whose
  # halves were added after it: greedy BPE may reach any of them, not just SentencePiece's.
  new_merges = []
  for token, cuts in added:
    for cut in sorted(set(cuts) | set(_known_cuts(token, vocab))):
      new_merges.append((token[:cut], token[cut:]))
  old_merges = read_merges(model)
  merges = new_merges + old_merges if new_merges_first else old_merges + new_merges
  model["merges"] = write_merges(merges, model["merges"])
  return spec


def _one_pretoken(tokenizer, text: str, token: str) -> bool:
  if tokenizer.normalizer is not None and tokenizer.normalizer.normalize_str(text) != text:
    return False
  if tokenizer.pre_tokenizer is None:
    return True
  pretokens = tokenizer.pre_tokenizer.pre_tokenize_str(text)
  return len(pretokens) == 1 and pretokens[0][0] == token


def _known_cuts(token: str, vocab: dict[str, int]) -> list[int]:
  """Character-boundary splits of a byte-level token into two tokens of `vocab`."""
  try:
    text = byte_level.byte_level_to_bytes(token).decode("utf-8")
  except UnicodeDecodeError:  # an intermediate inside a character: built by its own cut
    return []
  return [c for c in _char_cuts(text) if token[:c] in vocab and token[c:] in vocab]


def _char_cuts(text: str) -> list[int]:
  """Byte offsets at which `text` may be split: between characters, or inside a lone one."""
  if len(text) == 1:
    return list(range(1, len(text.encode("utf-8"))))
  offsets, total = [], 0
  for char in text[:-1]:
    total += len(char.encode("utf-8"))
    offsets.append(total)
  return offsets


def extend_sentencepiece_bpe(
    model: bytes | sp_model.ModelProto,
    pieces: Sequence[str],
    *,
    max_new_tokens: int | None = None,
    new_merges_first: bool = True,
) -> bytes:
  """Appends `pieces` to a SentencePiece BPE model (Mistral) as normal pieces.

  SentencePiece BPE merges by piece score, so "new merges first" means scores above every old
  piece (**open** for SentencePiece: LEP states the order for byte-level BPE; set False to
  score them below). A piece neither one character nor splittable into two known pieces could
  never be produced and is skipped.
  """
  proto = copy.deepcopy(sentencepiece_export.load_model_proto(model))
  if proto.trainer_spec.model_type != sp_model.TrainerSpec.BPE:
    raise ValueError("extend_sentencepiece_bpe needs a BPE SentencePiece model")
  known = {p.piece for p in proto.pieces}
  mergeable = {
      p.piece for p in proto.pieces if p.type in (NORMAL, sentencepiece_export.USER_DEFINED)
  }
  chosen: list[str] = []
  for piece in pieces:
    if max_new_tokens is not None and len(chosen) >= max_new_tokens:
      break
    if piece in known:
      continue
    if len(piece) > 1 and not any(
        piece[:c] in mergeable and piece[c:] in mergeable for c in range(1, len(piece))
    ):
      continue
    chosen.append(piece)
    known.add(piece)
    mergeable.add(piece)
  scores = [p.score for p in proto.pieces if p.type == NORMAL] or [0.0]
  for rank, piece in enumerate(chosen):
    score = (max(scores) + len(chosen) - rank) if new_merges_first else (min(scores) - 1 - rank)
    proto.pieces.add(piece=piece, score=float(score), type=NORMAL)
  return proto.SerializeToString()
