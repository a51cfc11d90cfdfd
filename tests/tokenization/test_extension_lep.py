import json

import lep_tiny_corpus as corpus
import pytest
import sentencepiece as spm

from langshift.tokenization import extension, shrinking
from langshift.tokenization.sentencepiece_export import sentencepiece_to_tokenizer
from langshift.tokenization.sentencepiece_training import train_sentencepiece
from langshift.tokenization.tokenizer_files import to_tokenizer, write_tokenizer_dir

ENGLISH_PROBES = corpus.sentences(corpus.ENGLISH, 40, seed=7)
RUSSIAN_PROBES = corpus.sentences(corpus.RUSSIAN, 40, seed=8)


@pytest.fixture(scope="module")
def russian_pieces():
  model = train_sentencepiece(
      corpus.sentences(corpus.RUSSIAN, 1500, seed=2),
      model_type="bpe",
      vocab_size=500,
      hard_vocab_limit=False,
  )
  return extension.sentencepiece_pieces(model)


@pytest.fixture(scope="module")
def byte_level_base():
  tok = corpus.byte_level_bpe(corpus.sentences(corpus.ENGLISH, 1500, seed=3), vocab_size=500)
  return json.loads(tok.to_str())


def _total_tokens(tok, texts):
  return sum(len(tok.encode(t, add_special_tokens=False).ids) for t in texts)


def _all_ids(spec):
  ids = dict(spec["model"]["vocab"])
  ids.update({t["content"]: t["id"] for t in spec["added_tokens"]})
  return ids


def test_byte_level_extension(byte_level_base, russian_pieces):
  extended = extension.extend_byte_level_bpe(byte_level_base, russian_pieces)
  old_ids, new_ids = _all_ids(byte_level_base), _all_ids(extended)
  assert all(new_ids[token] == i for token, i in old_ids.items())  # every old id kept
  added = set(new_ids) - set(old_ids)
  assert added and min(new_ids[t] for t in added) == max(old_ids.values()) + 1
  assert sorted(new_ids.values()) == list(range(len(new_ids)))
  old_merges = extension.read_merges(byte_level_base["model"])
  merges = extension.read_merges(extended["model"])
  assert merges[len(merges) - len(old_merges) :] == old_merges  # new merges come first
  assert "ĠÐ¿ÑĢÐ¸Ð²ÐµÑĤ" in added  # " привет", byte-level
  old, new = to_tokenizer(byte_level_base), to_tokenizer(extended)
  for text in ENGLISH_PROBES:  # no new merge touches it
    assert new.encode(text).ids == old.encode(text).ids
  for text in RUSSIAN_PROBES:
    assert new.decode(new.encode(text).ids) == text
  assert _total_tokens(new, RUSSIAN_PROBES) < 0.6 * _total_tokens(old, RUSSIAN_PROBES)


def test_byte_level_extension_builds_missing_intermediates(byte_level_base):
  # 3-byte characters the base never saw: their 2-byte prefixes become intermediate tokens.
  extended = extension.extend_byte_level_bpe(byte_level_base, ["▁中文", "中", "文"])
  tok = to_tokenizer(extended)
  ids = tok.encode(" 中文").ids
  assert len(ids) == 1 and tok.decode(ids) == " 中文"
  alone = extension.extend_byte_level_bpe(byte_level_base, ["▁中文"])
  needed = len(_all_ids(alone)) - len(_all_ids(byte_level_base))
  assert needed > 1
  for budget in (1, needed - 1, needed):  # the budget counts intermediates and is never passed
    limited = extension.extend_byte_level_bpe(byte_level_base, ["▁中文"], max_new_tokens=budget)
    added = len(_all_ids(limited)) - len(_all_ids(byte_level_base))
    assert added == (needed if budget == needed else 0)


def test_extension_loads_in_transformers(byte_level_base, russian_pieces, tmp_path):
  transformers = pytest.importorskip("transformers")
  extended = extension.extend_byte_level_bpe(byte_level_base, russian_pieces)
  write_tokenizer_dir(str(tmp_path), extended, eos_token="<|endoftext|>")
  hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
  for text in RUSSIAN_PROBES[:5] + ENGLISH_PROBES[:5]:
    assert hf(text)["input_ids"] == to_tokenizer(extended).encode(text).ids
  assert len(hf) == len(_all_ids(extended))


def test_sentencepiece_bpe_extension(russian_pieces):
  base = train_sentencepiece(
      corpus.sentences(corpus.ENGLISH, 1500, seed=4),
      model_type="bpe",
      vocab_size=400,
      hard_vocab_limit=False,
  )
  extended = extension.extend_sentencepiece_bpe(base, russian_pieces)
  old, new = spm.SentencePieceProcessor(model_proto=base), spm.SentencePieceProcessor(
      model_proto=extended
  )
  assert new.get_piece_size() > old.get_piece_size()
  assert all(new.id_to_piece(i) == old.id_to_piece(i) for i in range(old.get_piece_size()))
  for text in ENGLISH_PROBES:
    assert new.encode(text) == old.encode(text)
  assert sum(len(new.encode(t)) for t in RUSSIAN_PROBES) < 0.6 * sum(
      len(old.encode(t)) for t in RUSSIAN_PROBES
  )
  exported = sentencepiece_to_tokenizer(extended)
  for text in RUSSIAN_PROBES + ENGLISH_PROBES:
    assert exported.encode(text, add_special_tokens=False).ids == new.encode(text)


def test_shrink_then_extend(byte_level_base, russian_pieces):
  shrunk = shrinking.shrink_byte_level_bpe(byte_level_base, 300)
  assert len(shrunk["model"]["vocab"]) == 300
  assert sorted(_all_ids(shrunk).values()) == list(range(300 + 3))
  old, small = to_tokenizer(byte_level_base), to_tokenizer(shrunk)
  for text in ENGLISH_PROBES:
    assert small.decode(small.encode(text).ids) == text
    # Kept tokens are the most frequent merges: the shrunk tokenizer spends at most a bit more.
    assert len(small.encode(text).ids) >= len(old.encode(text).ids)
  assert small.token_to_id("<|im_end|>") == 302
  optimized = extension.extend_byte_level_bpe(shrunk, russian_pieces, max_new_tokens=50)
  assert len(_all_ids(optimized)) == 303 + 50
  opt = to_tokenizer(optimized)
  assert _total_tokens(opt, RUSSIAN_PROBES) < _total_tokens(old, RUSSIAN_PROBES)
