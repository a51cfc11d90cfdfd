import jax
import jax.numpy as jnp
import numpy as np
import pytest
from eval_fixtures import ByteTokenizer, tiny_model

from langshift.evaluation.scoring import LocalScorer
from langshift.models.llama import LlamaDecoder

TEXTS = ["Привет", "a", "كتاب", "繁體中文"]
MAX_LEN = 16


@pytest.fixture(scope="module")
def model():
  return tiny_model(seed=3)


def _direct_logprobs(config, params, ids):
  """Unpadded forward of one row; ids padded on the right only to share one compiled shape
  (causal attention: the padding cannot affect earlier positions)."""
  row = np.zeros((1, MAX_LEN), np.int32)
  row[0, : len(ids)] = ids
  logits = _forward(config)(params, row)
  return np.asarray(jax.nn.log_softmax(logits[0, : len(ids)].astype(jnp.float32), axis=-1))


_FORWARDS = {}


def _forward(config):
  if config not in _FORWARDS:
    _FORWARDS[config] = jax.jit(lambda p, t: LlamaDecoder(config).apply({"params": p}, t))
  return _FORWARDS[config]


def test_padded_batches_score_like_single_unpadded_rows(model):
  config, params = model
  tok = ByteTokenizer()
  scorer = LocalScorer(config, params, tok, batch_size=3, length_bucket=8)
  got = scorer.next_token_logprobs(TEXTS)
  nll = scorer.token_nll(TEXTS)
  for text, row, (total, count) in zip(TEXTS, got, nll):
    ids = [1] + tok.encode(text)
    logp = _direct_logprobs(config, params, ids)
    np.testing.assert_allclose(row, logp[-1], atol=1e-5)
    want = -sum(logp[t, ids[t + 1]] for t in range(len(ids) - 1))
    assert count == len(ids) - 1
    assert total == pytest.approx(want, rel=1e-5)
  # Chat prompts are not given another BOS.
  chat = scorer.next_token_logprobs(["xy"], chat=True)[0]
  np.testing.assert_allclose(
      chat, _direct_logprobs(config, params, tok.encode("xy"))[-1], atol=1e-5
  )
