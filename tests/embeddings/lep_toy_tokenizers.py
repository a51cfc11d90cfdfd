"""Hand-built byte-level BPE tokenizers with known segmentations, for embedding-transform tests."""

import json

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from langshift.tokenization.byte_level import byte_to_unicode

MERGES = [("h", "e"), ("l", "l"), ("ll", "o"), ("Ġ", "w"), ("o", "r"), ("Ġw", "or"), ("Ġwor", "ld")]


def toy_tokenizer(extra_merges=(), specials=("<|endoftext|>",), extra_specials=()):
  """Bytes 0..255, then the merge results, then the special tokens (in that id order)."""
  vocab = {ch: i for i, ch in enumerate(byte_to_unicode().values())}
  merges = list(MERGES[:-1]) + [("l", "d")] + [MERGES[-1]] + list(extra_merges)
  for left, right in merges:
    vocab.setdefault(left + right, len(vocab))
  tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  tok.add_special_tokens(
      [AddedToken(s, special=True) for s in list(specials) + list(extra_specials)]
  )
  return tok


def as_json(tok):
  return json.loads(tok.to_str())
