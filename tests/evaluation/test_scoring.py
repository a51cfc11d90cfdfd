import jax
import jax.numpy as jnp
import numpy as np
import pytest
from eval_fixtures import ByteTokenizer, tiny_model

from langshift.evaluation.scoring import (
    LocalScorer,
    pack_requests,
    resolve_bos,
    rolling_windows,
    split_trailing_whitespace,
)
from langshift.models.llama import LlamaDecoder

TEXTS = ["Привет", "a", "كتاب", "繁體中文"]
MAX_LEN = 64


@pytest.fixture(scope="module")
def model():
  return tiny_model(seed=3)


_FORWARDS = {}


def _direct_logprobs(config, params, ids):
  """Unpadded forward of one row; ids padded on the right only to share one compiled shape
  (causal attention: the padding cannot affect earlier positions)."""
  if config not in _FORWARDS:
    _FORWARDS[config] = jax.jit(lambda p, t: LlamaDecoder(config).apply({"params": p}, t))
  row = np.zeros((1, MAX_LEN), np.int32)
  row[0, : len(ids)] = ids
  logits = _FORWARDS[config](params, row)
  return np.asarray(jax.nn.log_softmax(logits[0, : len(ids)].astype(jnp.float32), axis=-1))


def _direct_continuation(config, params, context, continuation):
  ids = [*context, *continuation]
  logp = _direct_logprobs(config, params, ids)
  return sum(logp[len(context) + j - 1, t] for j, t in enumerate(continuation))


def test_bos_follows_the_tokenizer_unless_forced():
  assert resolve_bos(ByteTokenizer(adds_bos=True)) is True
  assert resolve_bos(ByteTokenizer(adds_bos=False), "auto") is False
  assert resolve_bos(ByteTokenizer(adds_bos=False), "true") is True
  assert resolve_bos(ByteTokenizer(adds_bos=True), False) is False
  with pytest.raises(ValueError, match=r"bos='yes'; expected one of \('auto', 'true', 'false'\)"):
    resolve_bos(ByteTokenizer(), "yes")
  no_bos = ByteTokenizer()
  no_bos.bos_id = None
  with pytest.raises(ValueError, match="bos=true but the tokenizer has no BOS token"):
    resolve_bos(no_bos, True)


def test_trailing_whitespace_moves_into_the_continuation():
  assert split_trailing_whitespace("Answer: \n", "B") == ("Answer:", " \nB")
  assert split_trailing_whitespace("Answer:", " B") == ("Answer:", " B")


@pytest.mark.parametrize("adds_bos", [False, True])
def test_continuation_log_likelihoods_equal_unpadded_forwards(model, adds_bos):
  config, params = model
  tok = ByteTokenizer(adds_bos=adds_bos)
  # Small chunks: continuations longer than one chunk are scored over several.
  scorer = LocalScorer(config, params, tok, batch_size=3, length_bucket=8, logits_chunk=4)
  # The last three differ only in their last token: they share one forward pass.
  pairs = [("Вопрос: да? Ответ:", " Нет"), ("Q: ", "yes, it is"), ("", "abc")]
  pairs += [("x", " 12"), ("x", " 13"), ("x", " 1a")]
  bos = [1] if adds_bos else []
  got = scorer.loglikelihood(pairs)
  for (context, continuation), scored in zip(pairs, got):
    ctx, cont = split_trailing_whitespace(context, continuation)
    if ctx:
      ids_ctx, ids_cont = bos + tok.encode(ctx), tok.encode(cont)
    else:  # an empty context is the prefix token (BOS)
      ids_ctx, ids_cont = [1], tok.encode(cont)
    assert scored.num_tokens == len(ids_cont)
    want = _direct_continuation(config, params, ids_ctx, ids_cont)
    assert scored.logprob == pytest.approx(want, abs=1e-4)
  # One request alone scores as it does in a padded batch.
  alone = scorer.loglikelihood(pairs[1:2])[0]
  assert alone.logprob == pytest.approx(got[1].logprob, abs=1e-5)


def test_rolling_windows_predict_every_token_once():
  tokens = list(range(10, 20))
  windows = list(rolling_windows(tokens, 1, window=4))
  assert windows == [
      ([1, 10, 11, 12], [10, 11, 12, 13]),
      ([13, 14, 15, 16], [14, 15, 16, 17]),
      ([15, 16, 17, 18], [18, 19]),  # the last window keeps a full context
  ]
  strided = list(rolling_windows(tokens, 1, window=4, stride=2))
  assert [t for _, w in strided for t in w] == tokens
  assert all(len(x) == 4 for x, _ in strided[1:])
  with pytest.raises(ValueError, match="stride=5; expected 1 <= stride <= window"):
    list(rolling_windows(tokens, 1, window=4, stride=5))


@pytest.mark.parametrize("stride", [None, 3])
def test_rolling_perplexity_equals_window_by_window_forwards(model, stride):
  config, params = model
  tok = ByteTokenizer()
  window = 8
  scorer = LocalScorer(
      config, params, tok, batch_size=2, length_bucket=8, max_length=window, stride=stride
  )
  texts = ["Сервер пишет журнал", "ab"]
  got = scorer.loglikelihood_rolling(texts)
  for text, scored in zip(texts, got):
    ids = tok.encode(text)
    assert scored.num_tokens == len(ids)  # nothing cut
    want = 0.0
    for inputs, targets in rolling_windows(ids, 1, window, stride):
      logp = _direct_logprobs(config, params, inputs)
      start = len(inputs) - len(targets)
      want += sum(logp[start + j, t] for j, t in enumerate(targets))
    assert scored.logprob == pytest.approx(want, abs=1e-4)
  # A text far longer than the window has every token predicted.
  assert scorer.token_nll(["x" * 50])[0][1] == 50


def test_next_token_logprobs_match_the_last_position(model):
  config, params = model
  tok = ByteTokenizer(adds_bos=True)
  scorer = LocalScorer(config, params, tok, batch_size=3, length_bucket=8)
  got = scorer.next_token_logprobs(TEXTS)
  for text, row in zip(TEXTS, got):
    np.testing.assert_allclose(
        row, _direct_logprobs(config, params, [1] + tok.encode(text))[-1], atol=1e-5
    )
  assert scorer.tok_encode("xy") == [1, *tok.encode("xy")]
  # A prompt that already starts with BOS (a chat template writes it) gets no second one.
  scorer.encode = lambda text: [1, *tok.encode(text)]
  assert scorer.tok_encode("xy") == [1, *tok.encode("xy")]


def test_requests_are_packed_into_rows_longest_first():
  # Rows of a call take the bucket of its longest request; shorter ones fill rows first-fit.
  calls = pack_requests([30, 5, 20, 9, 12, 3], rows_per_call=2, length_bucket=8, max_length=64)
  assert calls == [(32, [[0], [2, 4]]), (12, [[3, 5], [1]])]
  # Every request is placed exactly once.
  lengths = list(np.random.default_rng(0).integers(1, 60, size=40))
  calls = pack_requests(lengths, rows_per_call=3, length_bucket=8, max_length=64)
  placed = sorted(i for _, rows in calls for row in rows for i in row)
  assert placed == list(range(40))
  for length, rows in calls:
    assert len(rows) <= 3 and all(sum(lengths[i] for i in row) <= length for row in rows)


@pytest.mark.parametrize("vocab_block", [None, 64, 96])
def test_packed_requests_score_as_they_do_alone(model, vocab_block):
  """Many short requests share rows: each sees only itself (its own segment, positions from 0),
  and the vocabulary in blocks (96 does not divide the vocabulary: a last partial block) gives
  the full-softmax numbers and argmax."""
  config, params = model
  tok = ByteTokenizer()
  kwargs = dict(length_bucket=8, logits_chunk=8, vocab_block=vocab_block)
  packed = LocalScorer(config, params, tok, batch_size=2, **kwargs)
  alone = LocalScorer(config, params, tok, batch_size=1, vocab_block=None, length_bucket=8)
  texts = ["Сервер", "ab", "繁體中文 текст", "x", "hello there", "كتاب"]
  got = packed.loglikelihood_rolling(texts)
  for text, scored in zip(texts, got):
    want = alone.loglikelihood_rolling([text])[0]
    assert scored.num_tokens == want.num_tokens
    assert scored.logprob == pytest.approx(want.logprob, abs=1e-4)
    assert scored.is_greedy == want.is_greedy
  assert config.vocab_size % 96 != 0
  # The per-token argmax agrees with the full distribution's on every position.
  requests = [(x, t) for text in texts for x, t in rolling_windows(tok.encode(text), 1, 64)]
  for (x, t), (lp, hit) in zip(requests, packed.score_requests(requests)):
    full = _direct_logprobs(config, params, x)[len(x) - len(t) :]
    np.testing.assert_allclose(lp, full[np.arange(len(t)), t], atol=1e-4)
    np.testing.assert_array_equal(hit, np.argmax(full, axis=-1) == np.asarray(t))
