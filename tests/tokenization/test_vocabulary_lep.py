import lep_tiny_corpus as corpus
import numpy as np

from langshift.embeddings.vocabulary_map import build_vocabulary_map
from langshift.tokenization import extension
from langshift.tokenization.sentencepiece_export import sentencepiece_to_tokenizer
from langshift.tokenization.sentencepiece_training import train_sentencepiece
from langshift.tokenization.vocabulary import decompose, vocabulary


def test_sentencepiece_tokens_map_onto_byte_level_tokens_by_decoded_bytes():
  old = corpus.byte_level_bpe(corpus.sentences(corpus.RUSSIAN, 800, seed=5), vocab_size=400)
  new = sentencepiece_to_tokenizer(
      train_sentencepiece(
          corpus.sentences(corpus.RUSSIAN, 800, seed=6),
          model_type="bpe",
          vocab_size=400,
          hard_vocab_limit=False,
      )
  )
  vocab_map = build_vocabulary_map(old, new)
  old_vocab, new_vocab = vocabulary(old), vocabulary(new)
  new_ids, old_ids = vocab_map.kept_pairs()
  for n, o in zip(new_ids, old_ids):
    if not new_vocab.special[n]:
      assert new_vocab.surfaces[n] == old_vocab.surfaces[o]
  assert new.token_to_id("▁москва") in new_ids or old.token_to_id("Ġмосква") is None
  # A word-internal piece is re-spelled without SentencePiece's dummy prefix, and a lone
  # continuation byte through the byte-level alphabet.
  ids = decompose(old_vocab, "ство".encode())
  assert b"".join(old_vocab.surfaces[i] for i in ids) == "ство".encode()
  assert b"".join(old_vocab.surfaces[i] for i in decompose(old_vocab, b"\xbf")) == b"\xbf"
  new_byte = new.token_to_id("<0xBF>")
  assert vocab_map.operator[new_byte].indices.tolist() == [old.token_to_id("¿")]
  assert np.allclose(vocab_map.operator.sum(axis=1).A.ravel()[~vocab_map.fallback], 1.0)


def test_extension_keeps_every_old_row():
  base = corpus.byte_level_bpe(corpus.sentences(corpus.ENGLISH, 800, seed=5), vocab_size=400)
  import json

  pieces = extension.sentencepiece_pieces(
      train_sentencepiece(
          corpus.sentences(corpus.RUSSIAN, 800, seed=6),
          model_type="bpe",
          vocab_size=400,
          hard_vocab_limit=False,
      )
  )
  extended = extension.extend_byte_level_bpe(json.loads(base.to_str()), pieces)
  vocab_map = build_vocabulary_map(base, extended)
  size = base.get_vocab_size()
  new_ids, old_ids = vocab_map.kept_pairs()
  assert (new_ids[:size] == np.arange(size)).all() and (old_ids[:size] == np.arange(size)).all()
  assert not vocab_map.fallback.any()
