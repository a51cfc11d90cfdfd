import ml_dtypes
import numpy as np
import pytest

from langshift.embeddings import propagation
from langshift.embeddings.initialization import mean_subtoken_rows
from langshift.embeddings.propagation import (
    fit_propagation_map,
    propagate_embedding_params,
    propagate_embedding_rows,
)
from langshift.embeddings.vocabulary_map import vocabulary_map_from_decompositions

OLD, NEW, DIM = 300, 120, 16


def _vocabulary_map(seed=0):
  """The old vocabulary kept (in shuffled order, as after shrinking) plus NEW averaged tokens."""
  rng = np.random.default_rng(seed)
  kept = [[int(i)] for i in rng.permutation(OLD)]
  new = [list(rng.integers(0, OLD, rng.integers(2, 5))) for _ in range(NEW)]
  return vocabulary_map_from_decompositions(kept + new + [None], OLD)


def _problem(seed=0):
  rng = np.random.default_rng(seed)
  base = rng.normal(size=(OLD, DIM))
  transform = rng.normal(size=(DIM, DIM)) / np.sqrt(DIM) + np.eye(DIM)
  return base, base @ transform, transform


@pytest.mark.parametrize("method", ["overlap", "conversion"])
@pytest.mark.parametrize("solver", ["lstsq", "normal"])
def test_least_squares_recovers_the_instruct_transform(method, solver):
  base, instruct, transform = _problem()
  vocab_map = _vocabulary_map()
  fitted = fit_propagation_map(base, instruct, vocab_map, method, solver=solver)
  np.testing.assert_allclose(fitted, transform, rtol=1e-6, atol=1e-9)


def test_mixed_precision_products_stay_close():
  base, instruct, transform = _problem()
  fitted = fit_propagation_map(
      base.astype(np.float32),
      instruct.astype(np.float32),
      _vocabulary_map(),
      "conversion",
      solver="normal",
      product_dtype=np.float32,
  )
  np.testing.assert_allclose(fitted, transform, atol=1e-4)


@pytest.mark.parametrize("method", ["overlap", "conversion"])
def test_donor_equal_to_initialised_base_gives_instruct_rows_of_kept_tokens(method):
  base, instruct, _ = _problem(1)
  vocab_map = _vocabulary_map(1)
  donor = mean_subtoken_rows(base, vocab_map)
  new = propagate_embedding_rows(base, instruct, donor, vocab_map, method=method)
  new_ids, old_ids = vocab_map.kept_pairs()
  # Tolerances are fp32's: initialisation computes the donor rows in fp32 by design.
  np.testing.assert_allclose(new[new_ids], instruct[old_ids], rtol=1e-5, atol=1e-6)
  # New tokens get the mean of their parts' instruct rows: the map is linear.
  averaged = ~vocab_map.kept & ~vocab_map.fallback
  np.testing.assert_allclose(
      new[averaged], vocab_map.operator[averaged] @ instruct, rtol=1e-5, atol=1e-6
  )


def test_swap_uses_donor_rows_or_keeps_instruct_rows_of_kept_tokens():
  base, instruct, _ = _problem(2)
  vocab_map = _vocabulary_map(2)
  donor = mean_subtoken_rows(base, vocab_map)
  np.testing.assert_array_equal(
      propagate_embedding_rows(base, instruct, donor, vocab_map, method="swap"), donor
  )
  kept = propagate_embedding_rows(
      base, instruct, donor, vocab_map, method="swap", keep_instruct_rows=True
  )
  new_ids, old_ids = vocab_map.kept_pairs()
  np.testing.assert_array_equal(kept[new_ids], instruct[old_ids])
  fresh = ~vocab_map.kept
  np.testing.assert_array_equal(kept[fresh], donor[fresh])


@pytest.mark.parametrize("tied", [True, False])
def test_param_tree_propagation_tied_and_untied(tied):
  rng = np.random.default_rng(3)
  vocab_map = _vocabulary_map(3)
  base_embed, instruct_embed, _ = _problem(3)
  base = {"embed_tokens": {"embedding": base_embed.astype(np.float32)}}
  instruct = {
      "embed_tokens": {"embedding": instruct_embed.astype(np.float32)},
      "layers": {"mlp": {"kernel": rng.normal(size=(2, 3))}},
  }
  transform_out = rng.normal(size=(DIM, DIM))
  if not tied:  # lm_head is stored [embed, vocab]; it gets its own transform
    base_out = rng.normal(size=(OLD, DIM))
    base["lm_head"] = {"kernel": base_out.T.astype(np.float32)}
    instruct["lm_head"] = {"kernel": (base_out @ transform_out).T.astype(np.float32)}
  donor = {name: {key: value for key, value in leaf.items()} for name, leaf in base.items()}
  donor["embed_tokens"]["embedding"] = mean_subtoken_rows(base_embed, vocab_map)
  if not tied:
    donor["lm_head"]["kernel"] = mean_subtoken_rows(base_out, vocab_map).T
  # The instruct model's chat token (instruct id 7) is appended after the donor's rows.
  out = propagate_embedding_params(
      base, instruct, donor, vocab_map, method="conversion", special_rows=[(vocab_map.new_size, 7)]
  )
  assert out["layers"] is instruct["layers"]
  assert ("lm_head" in out) == (not tied)
  embed = out["embed_tokens"]["embedding"]
  assert embed.shape == (vocab_map.new_size + 1, DIM) and embed.dtype == np.float32
  np.testing.assert_array_equal(embed[-1], instruct["embed_tokens"]["embedding"][7])
  new_ids, old_ids = vocab_map.kept_pairs()
  np.testing.assert_allclose(embed[new_ids], instruct_embed[old_ids], rtol=1e-4, atol=1e-4)
  if not tied:
    head = out["lm_head"]["kernel"]
    assert head.shape == (DIM, vocab_map.new_size + 1)
    np.testing.assert_allclose(
        head[:, new_ids], (base_out @ transform_out)[old_ids].T, rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("chunk_rows", [7, 4096])
def test_chunked_normal_equations_match_the_sparse_system(chunk_rows):
  """The chunked gather (one-hot, 2-4-entry and empty rows) is the operator's product."""
  vocab_map = _vocabulary_map(4)
  base, instruct, _ = _problem(4)
  operator = vocab_map.operator
  for dtype in (np.float64, np.float32):
    gathered = np.concatenate(
        [
            propagation._gather(chunk, base, dtype)
            for chunk in propagation._chunks(operator, chunk_rows)
        ]
    )
    np.testing.assert_allclose(
        gathered, operator @ base, rtol=1e-6 if dtype == np.float32 else 1e-12, atol=1e-6
    )
  a, b = operator[~vocab_map.fallback] @ base, operator[~vocab_map.fallback] @ instruct
  reference = np.linalg.lstsq(a, b, rcond=None)[0]
  fitted = fit_propagation_map(
      base, instruct, vocab_map, "conversion", solver="normal", chunk_rows=chunk_rows
  )
  np.testing.assert_allclose(fitted, reference, rtol=1e-8, atol=1e-10)


def test_apply_in_fp32_rounds_like_the_float64_product():
  rng = np.random.default_rng(5)
  donor = rng.normal(size=(1000, DIM)).astype(ml_dtypes.bfloat16)
  transform = rng.normal(size=(DIM, DIM))
  out = propagation.apply_propagation_map(
      donor, transform, chunk_rows=300, product_dtype=np.float32
  )
  exact = (donor.astype(np.float64) @ transform).astype(ml_dtypes.bfloat16)
  assert out.dtype == ml_dtypes.bfloat16
  # fp32 products change the bf16 rounding of at most a few entries, by one ulp.
  differ = out.astype(np.float32) != exact.astype(np.float32)
  assert differ.mean() < 1e-3
  np.testing.assert_allclose(out.astype(np.float32), exact.astype(np.float32), rtol=2**-7)
