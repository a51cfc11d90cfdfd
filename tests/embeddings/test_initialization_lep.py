import numpy as np
import pytest
from lep_toy_tokenizers import toy_tokenizer

from langshift.embeddings.initialization import (
    mean_subtoken_rows,
    random_normal_rows,
    resize_embedding_params,
)
from langshift.embeddings.vocabulary_map import build_vocabulary_map


def _matrix(rows, dim=8, seed=0, dtype=np.float32):
  return np.random.default_rng(seed).normal(size=(rows, dim)).astype(dtype)


def test_same_tokenizer_leaves_matrix_exactly_unchanged():
  tok = toy_tokenizer()
  vocab_map = build_vocabulary_map(tok, tok)
  assert vocab_map.kept.all() and not vocab_map.fallback.any()
  for dtype in (np.float32, np.float16):
    old = _matrix(tok.get_vocab_size(), dtype=dtype)
    np.testing.assert_array_equal(mean_subtoken_rows(old, vocab_map), old)
  params = {
      "embed_tokens": {"embedding": _matrix(tok.get_vocab_size())},
      "lm_head": {"kernel": _matrix(tok.get_vocab_size(), seed=1).T},
      "norm": {"scale": np.ones(8)},
  }
  resized = resize_embedding_params(params, vocab_map)
  np.testing.assert_array_equal(
      resized["embed_tokens"]["embedding"], params["embed_tokens"]["embedding"]
  )
  np.testing.assert_array_equal(resized["lm_head"]["kernel"], params["lm_head"]["kernel"])
  assert resized["norm"] is params["norm"]


def test_concatenated_token_gets_mean_of_its_parts_and_specials_copy_by_string():
  old_tok = toy_tokenizer()
  # New vocabulary: the old one + "hello" (= "he" + "llo") + a new chat token; its old special
  # moves to a new id.
  new_tok = toy_tokenizer(extra_merges=[("he", "llo")], extra_specials=["<|im_end|>"])
  vocab_map = build_vocabulary_map(old_tok, new_tok)
  old = _matrix(old_tok.get_vocab_size())
  new = mean_subtoken_rows(old, vocab_map)
  he, llo = old_tok.token_to_id("he"), old_tok.token_to_id("llo")
  np.testing.assert_array_equal(new[new_tok.token_to_id("hello")], (old[he] + old[llo]) / 2)
  assert new_tok.token_to_id("<|endoftext|>") != old_tok.token_to_id("<|endoftext|>")
  np.testing.assert_array_equal(
      new[new_tok.token_to_id("<|endoftext|>")], old[old_tok.token_to_id("<|endoftext|>")]
  )
  # A special token the old vocabulary lacks: global mean, unless mapped by string.
  np.testing.assert_allclose(new[new_tok.token_to_id("<|im_end|>")], old.mean(0), rtol=1e-6)
  mapped = build_vocabulary_map(old_tok, new_tok, special_token_map={"<|im_end|>": "<|endoftext|>"})
  np.testing.assert_array_equal(
      mean_subtoken_rows(old, mapped)[new_tok.token_to_id("<|im_end|>")],
      old[old_tok.token_to_id("<|endoftext|>")],
  )
  # Padding rows past the tokenizer; bf16-like storage still computed in fp32.
  padded = mean_subtoken_rows(old.astype(np.float16), vocab_map, num_rows=320)
  assert padded.shape == (320, 8) and padded.dtype == np.float16


def test_random_normal_init_is_seeded_and_matches_old_statistics():
  old_tok = toy_tokenizer()
  new_tok = toy_tokenizer(extra_merges=[("he", "llo")])
  vocab_map = build_vocabulary_map(old_tok, new_tok)
  old = _matrix(old_tok.get_vocab_size()) * 3 + 1
  a = random_normal_rows(old, vocab_map, seed=0, num_rows=20000)
  b = random_normal_rows(old, vocab_map, seed=0, num_rows=20000)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, random_normal_rows(old, vocab_map, seed=1, num_rows=20000))
  new_ids, old_ids = vocab_map.kept_pairs()
  np.testing.assert_array_equal(a[new_ids], old[old_ids])
  fresh = a[vocab_map.new_size :]
  np.testing.assert_allclose(fresh.mean(0), old.mean(0), atol=0.1)
  np.testing.assert_allclose(fresh.std(0), old.std(0), rtol=0.05)


@pytest.mark.parametrize("tied", [True, False])
def test_resize_params_tied_and_untied(tied):
  old_tok = toy_tokenizer()
  new_tok = toy_tokenizer(extra_merges=[("he", "llo")])
  vocab_map = build_vocabulary_map(old_tok, new_tok)
  v_old, v_new = old_tok.get_vocab_size(), new_tok.get_vocab_size()
  params = {"embed_tokens": {"embedding": _matrix(v_old)}}
  if not tied:
    params["lm_head"] = {"kernel": _matrix(v_old, seed=1).T}
  resized = resize_embedding_params(params, vocab_map)
  assert resized["embed_tokens"]["embedding"].shape == (v_new, 8)
  assert ("lm_head" in resized) == (not tied)
  if not tied:
    assert resized["lm_head"]["kernel"].shape == (8, v_new)
    hello = new_tok.token_to_id("hello")
    out = params["lm_head"]["kernel"].T
    np.testing.assert_array_equal(
        resized["lm_head"]["kernel"][:, hello],
        (out[old_tok.token_to_id("he")] + out[old_tok.token_to_id("llo")]) / 2,
    )
