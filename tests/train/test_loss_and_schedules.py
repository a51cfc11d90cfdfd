"""Loss arithmetic and learning-rate schedules against hand-computed values."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from langshift.train.loss import chunked_cross_entropy, weighted_cross_entropy
from langshift.train.optimizer import learning_rate_schedule, trainable_mask


def _np_loss(logits, targets, weights, z):
  log_z = np.log(np.exp(logits).sum(-1))
  ce = log_z - np.take_along_axis(logits, targets[..., None], -1)[..., 0]
  return float(((ce + z * log_z**2) * weights).sum()), float(weights.sum())


@pytest.mark.parametrize("z", [0.0, 1e-2])
def test_weighted_cross_entropy_and_z_loss(z):
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 8, 11)).astype(np.float32) * 3
  targets = rng.integers(0, 11, size=(2, 8))
  weights = (rng.random((2, 8)) > 0.3).astype(np.float32)
  s, w = weighted_cross_entropy(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(weights), z)
  es, ew = _np_loss(logits.astype(np.float64), targets, weights, z)
  np.testing.assert_allclose(float(s), es, rtol=1e-5)
  assert float(w) == ew
  # Chunked over positions: the same sums.
  hidden = jnp.asarray(rng.normal(size=(2, 8, 5)), jnp.float32)
  proj = jnp.asarray(rng.normal(size=(5, 11)), jnp.float32)
  full = weighted_cross_entropy(hidden @ proj, jnp.asarray(targets), jnp.asarray(weights), z)
  chunked = chunked_cross_entropy(
      hidden, lambda h: h @ proj, jnp.asarray(targets), jnp.asarray(weights), 4, z
  )
  np.testing.assert_allclose(np.asarray(chunked), np.asarray(full), rtol=1e-5)


def _opt(**kw):
  base = dict(
      learning_rate=1.0,
      schedule="cosine",
      warmup_steps=10,
      total_steps=110,
      final_lr_fraction=0.1,
      wsd_decay_fraction=0.2,
  )
  base.update(kw)
  return ml_collections.ConfigDict(base)


def test_schedules():
  cos = learning_rate_schedule(_opt())
  assert float(cos(0)) == 0.0 and float(cos(5)) == pytest.approx(0.5)
  assert float(cos(10)) == pytest.approx(1.0)
  assert float(cos(60)) == pytest.approx(0.1 + 0.9 * 0.5, rel=1e-5)  # half-way down the cosine
  assert float(cos(110)) == pytest.approx(0.1, rel=1e-5)
  wsd = learning_rate_schedule(_opt(schedule="wsd"))
  assert float(wsd(50)) == pytest.approx(1.0) and float(wsd(88)) == pytest.approx(1.0)
  assert float(wsd(99)) == pytest.approx(1.0 - 0.9 * 11 / 22, rel=1e-5)  # linear decay, last 22
  assert float(wsd(110)) == pytest.approx(0.1, rel=1e-5)
  const = learning_rate_schedule(_opt(schedule="constant", warmup_steps=0))
  assert float(const(0)) == float(const(1000)) == 1.0
  with pytest.raises(ValueError, match="optimizer.schedule"):
    learning_rate_schedule(_opt(schedule="linear"))


def test_trainable_selection_errors():
  params = {"embed_tokens": {"embedding": 0}, "layers": {"mlp": {"up_proj": {"kernel": 0}}}}
  assert trainable_mask(params, ["mlp/"]) == {
      "embed_tokens": {"embedding": False},
      "layers": {"mlp": {"up_proj": {"kernel": True}}},
  }
  with pytest.raises(ValueError, match="not a preset"):
    trainable_mask(params, "qlora")
  with pytest.raises(ValueError, match="matches no parameter"):
    trainable_mask(params, ["^nothing"])
