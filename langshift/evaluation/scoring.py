"""Log-likelihood scoring with a langshift decoder, in lm-evaluation-harness's conventions.

Three request kinds, each defined the way EleutherAI's lm-evaluation-harness (Gao et al., 2024,
"The Language Model Evaluation Harness", v0.4.13) defines it, so the numbers compare with
published lm-eval numbers (conventions side by side: docs/evaluation.md):

- `loglikelihood(pairs)`: log p(continuation | context). Trailing whitespace of the context moves
  into the continuation; context + continuation are tokenized together and split after the
  context's own tokens (`encode_pair`); an empty context is the prefix token.
- `loglikelihood_rolling(texts)`: the whole text's log-likelihood with rolling windows of at most
  `max_length` tokens, conditioned on the prefix token (BOS, else EOS); every token is predicted
  exactly once and nothing is cut. `stride` < `max_length` gives every window after the first
  `max_length - stride` tokens of extra context (lm-eval always uses stride = window).
- `next_token_logprobs(prompts)`: the full next-token distribution after each prompt (the
  first-token choice rule).

BOS follows the tokenizer (`resolve_bos`): it is prepended where the tokenizer's own
`encode(..., add_special_tokens=True)` prepends it, unless forced on or off; a text that already
starts with BOS (a chat template that writes it) never gets a second one.

Only the positions whose next token is scored go through the output projection, a chunk of
`logits_chunk` positions at a time, so memory is bounded by batch x chunk x vocabulary however
long the prompts are. Batches are padded to bucketed shapes and the jit-compiled functions are
cached per model config, so a trainer that evaluates every N steps recompiles nothing.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from langshift.generation.chat_render import chat_renderer
from langshift.models.config import ModelConfig
from langshift.models.llama import LlamaDecoder, positions_from_segment_ids
from langshift.parallel.host_transfer import to_host

BOS_SETTINGS = ("auto", "true", "false")


def round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


def bucket(n: int, smallest: int) -> int:
  """The shape `n` is padded to: `smallest`, else the next of 2^k and 1.5 * 2^k (each new shape
  is a compilation, so their number grows with log(n), at most 50% padding)."""
  size = smallest
  while size < n:
    size = size * 3 // 2 if size & (size - 1) == 0 else size * 4 // 3
  return size


def tokenizer_adds_bos(tokenizer) -> bool:
  """Whether the tokenizer's own encoding (post-processor / `add_bos_token`) starts with BOS."""
  bos = getattr(tokenizer, "bos_id", None)
  if bos is None:
    return False
  try:
    ids = list(tokenizer.encode("a", add_special_tokens=True))
  except TypeError:  # an encode() without special tokens adds nothing
    return False
  return bool(ids) and ids[0] == bos and len(ids) > len(list(tokenizer.encode("a")))


def resolve_bos(tokenizer, bos: str | bool | None = "auto") -> bool:
  """The BOS setting: "auto" (or None) follows the tokenizer; True/"true" and False/"false" force.

  A forced True with a tokenizer that has no BOS token is an error.
  """
  if isinstance(bos, str):
    if bos.lower() not in BOS_SETTINGS:
      raise ValueError(f"bos={bos!r}; expected one of {BOS_SETTINGS}")
    bos = None if bos.lower() == "auto" else bos.lower() == "true"
  if bos is None:
    return tokenizer_adds_bos(tokenizer)
  if bos and getattr(tokenizer, "bos_id", None) is None:
    raise ValueError("bos=true but the tokenizer has no BOS token")
  return bool(bos)


def prefix_token_id(tokenizer) -> int:
  """What conditions the first token of a text or of an empty context: BOS, else EOS (lm-eval's
  `prefix_token_id`)."""
  for token in (getattr(tokenizer, "bos_id", None), *getattr(tokenizer, "eos_ids", ())):
    if token is not None:
      return int(token)
  raise ValueError("the tokenizer has neither a BOS nor an EOS token to condition texts on")


def split_trailing_whitespace(context: str, continuation: str) -> tuple[str, str]:
  """lm-eval's rule: whitespace at the end of the context belongs to the continuation, so a prompt
  ending in a space scores " answer" as one word rather than a bare space then "answer"."""
  stripped = context.rstrip()
  return stripped, context[len(stripped) :] + continuation


def rolling_windows(
    token_ids: Sequence[int], prefix_id: int, window: int, stride: int | None = None
) -> Iterator[tuple[list[int], list[int]]]:
  """(inputs, targets) windows over a text; targets are predicted by the last len(targets) inputs.

  The first window predicts the first `window` tokens after the prefix token; each later one
  predicts the next `stride` tokens (the last one fewer) with as much preceding text as fits in
  `window` inputs. Every token is predicted exactly once; stride = window is lm-eval's
  `get_rolling_token_windows(context_len=1)` followed by `make_disjoint_window`.
  """
  stride = window if stride is None else stride
  if not 1 <= stride <= window:
    raise ValueError(f"stride={stride}; expected 1 <= stride <= window ({window})")
  n = len(token_ids)
  if n == 0:
    return
  seq = [prefix_id, *token_ids]  # seq[p] predicts seq[p + 1] = token_ids[p]
  done = min(window, n)
  yield seq[:done], list(token_ids[:done])
  while done < n:
    end = min(n, done + stride)
    yield seq[end - window : end], list(token_ids[done:end])
    done = end


@dataclasses.dataclass(frozen=True)
class Scored:
  """One scored continuation: its summed log-probability, token count, and whether every token
  was the model's argmax."""

  logprob: float
  num_tokens: int
  is_greedy: bool


@functools.lru_cache(maxsize=16)
def _target_logprobs_fn(config: ModelConfig, num_targets: int, chunk: int):
  """tokens/segment_ids [B, T] (left-padded), targets [B, K] -> (log p(target) [B, K], argmax hit
  [B, K], log p(every token) at the last position [B, V]); target j is predicted by position
  T - K + j."""
  model = LlamaDecoder(config)

  def fn(params, tokens, segment_ids, targets):
    positions = positions_from_segment_ids(segment_ids)
    hidden = model.apply({"params": params}, tokens, positions, segment_ids, return_hidden=True)
    b, d = hidden.shape[0], hidden.shape[-1]
    last = model.apply({"params": params}, hidden[:, -1:], method=LlamaDecoder.logits_from_hidden)
    last = jax.nn.log_softmax(last[:, 0].astype(jnp.float32), axis=-1)
    hidden = hidden[:, -num_targets:].reshape(b, num_targets // chunk, chunk, d).swapaxes(0, 1)
    targets = targets.reshape(b, num_targets // chunk, chunk).swapaxes(0, 1)

    def one_chunk(_, xs):
      h, t = xs
      logits = model.apply({"params": params}, h, method=LlamaDecoder.logits_from_hidden)
      logits = logits.astype(jnp.float32)
      picked = jnp.take_along_axis(logits, t[..., None], axis=-1)[..., 0]
      logp = picked - jax.nn.logsumexp(logits, axis=-1)
      return None, (logp, jnp.argmax(logits, axis=-1) == t)

    _, (logp, greedy) = jax.lax.scan(one_chunk, None, (hidden, targets))
    logp = logp.swapaxes(0, 1).reshape(b, num_targets)
    return logp, greedy.swapaxes(0, 1).reshape(b, num_targets), last

  return jax.jit(fn)


@functools.lru_cache(maxsize=8)
def _next_token_logprobs_fn(config: ModelConfig):
  model = LlamaDecoder(config)

  def fn(params, tokens, segment_ids):
    positions = positions_from_segment_ids(segment_ids)
    hidden = model.apply({"params": params}, tokens, positions, segment_ids, return_hidden=True)
    logits = model.apply({"params": params}, hidden[:, -1:], method=LlamaDecoder.logits_from_hidden)
    return jax.nn.log_softmax(logits[:, 0].astype(jnp.float32), axis=-1)

  return jax.jit(fn)


def _left_pad(rows: Sequence[Sequence[int]], length: int, batch: int, pad_id: int):
  """(tokens, segment_ids) int32 [batch, length], rows right-aligned; missing rows are one pad
  token in segment 1 (so every row attends to something)."""
  tokens = np.full((batch, length), pad_id, np.int32)
  segs = np.zeros((batch, length), np.int32)
  for i in range(batch):
    ids = list(rows[i]) if i < len(rows) else [pad_id]
    tokens[i, length - len(ids) :] = ids
    segs[i, length - len(ids) :] = 1
  return tokens, segs


class LocalScorer:
  """Scores prompts and texts with in-memory params.

  Args:
    bos: "auto" (follow the tokenizer), "true" or "false"; see `resolve_bos`.
    max_length: the longest sequence one forward pass sees (lm-eval's `max_length`): the rolling
      window of perplexity, and the left-truncation limit of choice prompts. Default: the model's
      `max_position_embeddings`.
    stride: tokens predicted per rolling window after the first (default `max_length`).
    logits_chunk: positions projected onto the vocabulary at a time.
  """

  def __init__(
      self,
      config: ModelConfig,
      params,
      tokenizer,
      *,
      batch_size: int = 8,
      length_bucket: int = 64,
      max_length: int | None = None,
      stride: int | None = None,
      bos: str | bool | None = "auto",
      logits_chunk: int = 128,
      render_chat=None,
  ):
    self.config, self.params, self.tokenizer = config, params, tokenizer
    self.batch_size, self.length_bucket = batch_size, length_bucket
    self.max_length = max_length or config.max_position_embeddings
    self.stride = stride or self.max_length
    if not 1 <= self.stride <= self.max_length:
      raise ValueError(f"stride={stride}; expected 1 <= stride <= max_length ({self.max_length})")
    self.add_bos = resolve_bos(tokenizer, bos)
    self.logits_chunk = logits_chunk
    self._render_chat = render_chat
    self.pad_id = config.pad_token_id if config.pad_token_id is not None else 0

  @property
  def settings(self) -> dict[str, float]:
    """What the numbers depend on beyond the model, for writing next to the metrics."""
    return {"bos": float(self.add_bos), "max_length": float(self.max_length)}

  def encode(self, text: str) -> list[int]:
    """Ids of the text alone (no special tokens)."""
    return list(self.tokenizer.encode(text))

  def tok_encode(self, text: str) -> list[int]:
    """Ids with BOS per the setting; never a second BOS."""
    ids = self.encode(text)
    bos = getattr(self.tokenizer, "bos_id", None)
    if self.add_bos and (not ids or ids[0] != bos):
      ids = [bos, *ids]
    return ids

  def render_chat(self, messages) -> str:
    return (self._render_chat or chat_renderer(self.tokenizer))(messages)

  def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) as lm-eval's `_encode_pair` splits them."""
    context, continuation = split_trailing_whitespace(context, continuation)
    if not context:
      return [prefix_token_id(self.tokenizer)], self.encode(continuation)
    whole, n = self.tok_encode(context + continuation), len(self.tok_encode(context))
    return whole[:n], whole[n:]

  def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[Scored]:
    return self.loglikelihood_tokens([self.encode_pair(c, x) for c, x in pairs])

  def loglikelihood_tokens(
      self, encoded: Sequence[tuple[Sequence[int], Sequence[int]]]
  ) -> list[Scored]:
    """log p(continuation | context) per (context ids, continuation ids); contexts longer than
    `max_length` lose their oldest tokens (lm-eval's left truncation), with a warning."""
    requests, cut = [], 0
    for context, continuation in encoded:
      if not continuation:
        raise ValueError("a continuation encodes to no tokens")
      if len(continuation) > self.max_length:
        raise ValueError(
            f"a continuation of {len(continuation)} tokens exceeds max_length={self.max_length}"
        )
      whole = [*context, *continuation]
      cut += len(whole) - 1 > self.max_length
      requests.append((whole[-(self.max_length + 1) : -1], list(continuation)))
    if cut:
      logging.warning(
          "%d of %d prompts cut on the left to %d tokens", cut, len(requests), self.max_length
      )
    scored = self.score_requests(requests)
    return [Scored(float(lp.sum(dtype=np.float64)), len(lp), bool(g.all())) for lp, g in scored]

  def loglikelihood_rolling(self, texts: Sequence[str]) -> list[Scored]:
    """Whole-text log-likelihood over rolling windows (nothing is cut)."""
    prefix = prefix_token_id(self.tokenizer)
    owners, requests = [], []
    for i, text in enumerate(texts):
      for window in rolling_windows(self.tok_encode(text), prefix, self.max_length, self.stride):
        owners.append(i)
        requests.append(window)
    totals = [[0.0, 0, True] for _ in texts]
    for i, (logp, greedy) in zip(owners, self.score_requests(requests)):
      totals[i][0] += float(logp.sum(dtype=np.float64))
      totals[i][1] += len(logp)
      totals[i][2] &= bool(greedy.all())
    return [Scored(lp, n, g) for lp, n, g in totals]

  def token_nll(self, texts: Sequence[str]) -> list[tuple[float, int]]:
    """(sum of NLL in nats, number of predicted tokens) per text, over rolling windows."""
    return [(-s.logprob, s.num_tokens) for s in self.loglikelihood_rolling(texts)]

  def score_requests(
      self, requests: Sequence[tuple[Sequence[int], Sequence[int]]]
  ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per-token (log-probs, argmax hits) of `targets` for each (inputs, targets): target j is
    predicted by input position len(inputs) - len(targets) + j.

    Requests that differ only in their last target (the choices of one prompt whose answers are
    one token, as lm-eval's one-token continuation cache finds them) share one forward pass.
    """
    groups: dict = {}
    for i, (inputs, targets) in enumerate(requests):
      groups.setdefault((tuple(inputs), tuple(targets[:-1])), []).append(i)
    unique = [requests[members[0]] for members in groups.values()]
    # Longest first, as lm-eval orders them: rows of one batch have similar lengths.
    order = sorted(range(len(unique)), key=lambda i: -len(unique[i][0]))
    members = list(groups.values())
    out: list = [None] * len(requests)
    for start in range(0, len(order), self.batch_size):
      rows = order[start : start + self.batch_size]
      chunk = [unique[i] for i in rows]
      length = min(bucket(max(len(x) for x, _ in chunk), self.length_bucket), self.max_length)
      # Targets in blocks of `logits_chunk` positions (fewer when all are short); left padding
      # past the inputs only ever meets masked-out targets.
      block = min(self.logits_chunk, bucket(max(len(t) for _, t in chunk), 8))
      num_targets = round_up(max(len(t) for _, t in chunk), block)
      length = max(length, num_targets)
      tokens, segs = _left_pad([x for x, _ in chunk], length, self.batch_size, self.pad_id)
      targets = np.zeros((self.batch_size, num_targets), np.int32)
      for row, (_, t) in enumerate(chunk):
        targets[row, num_targets - len(t) :] = t
      fn = _target_logprobs_fn(self.config, num_targets, block)
      logp, greedy, last = to_host(fn(self.params, tokens, segs, targets))
      for row, i in enumerate(rows):
        n = len(unique[i][1])
        for j in members[i]:
          lp, hit = logp[row, num_targets - n :].copy(), greedy[row, num_targets - n :].copy()
          token = requests[j][1][-1]
          lp[-1], hit[-1] = last[row, token], int(np.argmax(last[row])) == token
          out[j] = (lp, hit)
    return out

  def next_token_logprobs(self, prompts: Sequence[str]) -> np.ndarray:
    """log p(next token | prompt) [len(prompts), V]; prompts keep their last `max_length`
    tokens."""
    fn = _next_token_logprobs_fn(self.config)
    rows = []
    for start in range(0, len(prompts), self.batch_size):
      ids = [
          self.tok_encode(p)[-self.max_length :] for p in prompts[start : start + self.batch_size]
      ]
      length = min(bucket(max(len(i) for i in ids), self.length_bucket), self.max_length)
      tokens, segs = _left_pad(ids, length, self.batch_size, self.pad_id)
      rows.append(to_host(fn(self.params, tokens, segs))[: len(ids)])
    return np.concatenate(rows, axis=0)
