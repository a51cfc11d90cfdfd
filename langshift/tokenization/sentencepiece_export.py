"""SentencePiece model -> Hugging Face `tokenizer.json` that yields the same ids.

BPE: SentencePiece merges the adjacent pair whose concatenation is the highest-scoring piece, so
every split of a piece into two pieces becomes a merge ranked by the merged piece's score (the
same reconstruction `transformers`' converters use). Unigram: the pieces and their log-probs.
The dummy prefix is a `Prepend("▁")` normaliser rather than a Metaspace pre-tokenizer, because
Metaspace skips the prefix when the text already starts with a space and SentencePiece does not.
"""

from __future__ import annotations

import json

from sentencepiece import sentencepiece_model_pb2 as sp_model
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors

SPACE = "▁"
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def load_model_proto(model: bytes | sp_model.ModelProto) -> sp_model.ModelProto:
  if isinstance(model, sp_model.ModelProto):
    return model
  return sp_model.ModelProto.FromString(model)


def bpe_merges(pieces: list[tuple[str, float]], mergeable: set[str]) -> list[tuple[str, str]]:
  """All (left, right) with left+right a piece, ordered by the merged piece's score (desc)."""
  ranked = sorted(range(len(pieces)), key=lambda i: (-pieces[i][1], i))
  merges = []
  for i in ranked:
    piece = pieces[i][0]
    if piece not in mergeable:
      continue
    for cut in range(1, len(piece)):
      left, right = piece[:cut], piece[cut:]
      if left in mergeable and right in mergeable:
        merges.append((left, right))
  return merges


def sentencepiece_to_tokenizer(
    model: bytes | sp_model.ModelProto, *, add_bos: bool = True, add_eos: bool = False
) -> Tokenizer:
  proto = load_model_proto(model)
  norm = proto.normalizer_spec
  if norm.precompiled_charsmap or norm.remove_extra_whitespaces:
    raise ValueError(
        "only identity-normalised SentencePiece models are exported (train with "
        "normalization_rule_name='identity', remove_extra_whitespaces=False)"
    )
  trainer = proto.trainer_spec
  pieces = [(p.piece, p.score) for p in proto.pieces]
  unk_id = next(i for i, p in enumerate(proto.pieces) if p.type == UNKNOWN)
  if trainer.model_type == sp_model.TrainerSpec.BPE:
    vocab = {piece: i for i, (piece, _) in enumerate(pieces)}
    mergeable = {p.piece for p in proto.pieces if p.type in (NORMAL, USER_DEFINED)}
    model_ = models.BPE(
        vocab=vocab,
        merges=bpe_merges(pieces, mergeable),
        unk_token=pieces[unk_id][0],
        fuse_unk=True,
        byte_fallback=trainer.byte_fallback,
    )
  elif trainer.model_type == sp_model.TrainerSpec.UNIGRAM:
    model_ = models.Unigram(pieces, unk_id=unk_id, byte_fallback=trainer.byte_fallback)
  else:
    raise ValueError(f"unsupported SentencePiece model type {trainer.model_type}")

  tokenizer = Tokenizer(model_)
  steps = [normalizers.Replace(" ", SPACE)]
  if norm.add_dummy_prefix:
    steps.insert(0, normalizers.Prepend(SPACE))
  tokenizer.normalizer = normalizers.Sequence(steps)
  tail = [decoders.Strip(" ", 1, 0)] if norm.add_dummy_prefix else []
  tokenizer.decoder = decoders.Sequence(
      [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()] + tail
  )
  tokenizer.add_special_tokens(
      [
          AddedToken(p.piece, special=True, normalized=False)
          for p in proto.pieces
          if p.type in (UNKNOWN, CONTROL)
      ]
  )
  processor = _bos_eos_processor(proto, add_bos, add_eos)
  if processor is not None:
    tokenizer.post_processor = processor
  return tokenizer


def sentencepiece_to_tokenizer_json(model: bytes | sp_model.ModelProto, **kwargs) -> dict:
  return json.loads(sentencepiece_to_tokenizer(model, **kwargs).to_str())


def _bos_eos_processor(proto, add_bos: bool, add_eos: bool):
  trainer = proto.trainer_spec
  specials, single, pair = [], ["$A"], ["$A", "$B"]
  if add_bos and trainer.bos_id >= 0:
    bos = proto.pieces[trainer.bos_id].piece
    specials.append((bos, trainer.bos_id))
    single, pair = [bos] + single, [bos, "$A", bos, "$B"]
  if add_eos and trainer.eos_id >= 0:
    eos = proto.pieces[trainer.eos_id].piece
    specials.append((eos, trainer.eos_id))
    single = single + [eos]
    pair = pair[: pair.index("$B")] + [eos] + pair[pair.index("$B") :] + [eos]
  if not specials:
    return None
  return processors.TemplateProcessing(
      single=" ".join(single), pair=" ".join(pair), special_tokens=specials
  )
