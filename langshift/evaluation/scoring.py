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

Requests are packed back to back into rows of a bucketed length, each in its own segment (as
training packs documents), so a forward pass spends its slots on tokens, not padding. Only the
positions whose next token is scored go through the output projection, a chunk of
`logits_chunk` positions and a block of `vocab_block` entries at a time, so memory is bounded by
chunk x block however long the prompts are. Shapes are bucketed and the jit-compiled functions
are cached per model config, so a trainer that evaluates every N steps recompiles little.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import linen as nn

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
    if size < 4:  # 1, 2, 3, 4: below 4 the two sequences meet
      size += 1
      continue
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


def head_matrix(config: ModelConfig, params):
  """The output projection as (matrix, vocab_major): the tied embedding [V, D] (vocab_major) or
  `lm_head`'s kernel [D, V]; None where it is more than a matrix (a LoRA adapter on lm_head)."""
  params = nn.unbox(params)
  if config.tie_word_embeddings:
    return params["embed_tokens"]["embedding"], True
  head = params.get("lm_head", {})
  return (head["kernel"], False) if set(head) == {"kernel"} else None


def _on_one_device(array) -> bool:
  sharding = getattr(array, "sharding", None)
  return sharding is None or sharding.num_devices == 1 or sharding.is_fully_replicated


def _blocked_logits(config: ModelConfig, matrix, vocab_major: bool, h, start, size: int):
  """fp32 logits [N, size] of hidden rows h [N, D] for vocabulary entries [start, start + size),
  computed as the model's output projection computes them (in the compute dtype)."""
  dt = jnp.dtype(config.dtype)
  w = jax.lax.dynamic_slice_in_dim(matrix, start, size, axis=0 if vocab_major else 1).astype(dt)
  return jnp.dot(h.astype(dt), w.T if vocab_major else w).astype(jnp.float32)


def _blocked_target_scores(config: ModelConfig, matrix, vocab_major: bool, block: int, h, t):
  """(log p(t), argmax == t) of hidden rows h [N, D] with the vocabulary in blocks of `block`.

  Same numbers as log_softmax over full logits (an online logsumexp, first-occurrence argmax),
  but a block's logits [N, block] stay in cache where full ones [N, V] (200 MB at N = 1,024,
  V = 49k) go through memory two or three times: the head of a scoring pass took 1.46x less
  time on CPU (docs/benchmarks.md).
  """
  vocab = config.vocab_size

  def absorb(carry, start, size):
    top, total, best, best_id, picked = carry
    z = _blocked_logits(config, matrix, vocab_major, h, start, size)
    z_max = z.max(axis=-1)
    new_top = jnp.maximum(top, z_max)
    total = total * jnp.exp(top - new_top) + jnp.exp(z - new_top[:, None]).sum(axis=-1)
    better = z_max > best  # strict: an earlier block keeps a tie, as argmax does
    best_id = jnp.where(better, jnp.argmax(z, axis=-1).astype(jnp.int32) + start, best_id)
    inside = (t >= start) & (t < start + size)
    local = jnp.take_along_axis(z, jnp.clip(t - start, 0, size - 1)[:, None], axis=-1)[:, 0]
    picked = jnp.where(inside, local, picked)
    return new_top, total, jnp.maximum(best, z_max), best_id, picked

  n = h.shape[0]
  inf = jnp.full((n,), -jnp.inf, jnp.float32)
  carry = (inf, jnp.zeros((n,), jnp.float32), inf, jnp.zeros((n,), jnp.int32), inf)
  full = vocab // block
  if full:
    carry, _ = jax.lax.scan(
        lambda c, start: (absorb(c, start, block), None),
        carry,
        jnp.arange(0, full * block, block, dtype=jnp.int32),
    )
  if vocab % block:
    carry = absorb(carry, full * block, vocab % block)
  top, total, _, best_id, picked = carry
  return picked - (top + jnp.log(total)), best_id == t


@functools.lru_cache(maxsize=32)
def _packed_logprobs_fn(
    config: ModelConfig, num_targets: int, chunk: int, num_last: int, vocab_block: int | None
):
  """tokens/segment_ids [B, L] (requests packed back to back, segment ids 1, 2, ... per row, 0 on
  padding), target_index [K] (flat index into B x L of the position predicting each target),
  targets [K], last_index [R] -> (log p(target) [K], argmax hit [K], log p(every token) [R, V]
  at the positions `last_index`, or None when R = 0)."""
  model = LlamaDecoder(config)

  def fn(params, tokens, segment_ids, target_index, targets, last_index):
    positions = positions_from_segment_ids(segment_ids)
    hidden = model.apply({"params": params}, tokens, positions, segment_ids, return_hidden=True)
    flat = hidden.reshape(-1, hidden.shape[-1])
    h = flat[target_index].reshape(num_targets // chunk, chunk, -1)
    t = targets.reshape(num_targets // chunk, chunk)
    head = head_matrix(config, params)

    def project(rows):  # hidden rows [N, D] -> fp32 logits [N, V], as logits_from_hidden
      if head is not None:
        return _blocked_logits(config, *head, rows, 0, config.vocab_size)
      out = model.apply({"params": params}, rows[None], method=LlamaDecoder.logits_from_hidden)
      return out[0].astype(jnp.float32)

    def one_chunk(_, xs):
      hc, tc = xs
      if head is not None:
        return None, _blocked_target_scores(config, *head, vocab_block or config.vocab_size, hc, tc)
      logits = project(hc)
      picked = jnp.take_along_axis(logits, tc[..., None], axis=-1)[..., 0]
      return None, (picked - jax.nn.logsumexp(logits, axis=-1), jnp.argmax(logits, axis=-1) == tc)

    _, (logp, greedy) = jax.lax.scan(one_chunk, None, (h, t))
    last = jax.nn.log_softmax(project(flat[last_index]), axis=-1) if num_last else None
    return logp.reshape(num_targets), greedy.reshape(num_targets), last

  return jax.jit(fn)


def pack_requests(
    lengths: Sequence[int], rows_per_call: int, length_bucket: int, max_length: int
) -> list[tuple[int, list[list[int]]]]:
  """Calls of (row length, rows); a row holds request indices back to back.

  Longest first: a call's row length is the bucket of its longest request, and the shorter
  requests fill its rows first-fit, so a forward pass spends its slots on tokens rather than on
  padding (one padded request per row spent 9,216 slots on 5,401 tokens of real documents;
  docs/benchmarks.md).
  """
  remaining = sorted(range(len(lengths)), key=lambda i: -lengths[i])
  calls = []
  while remaining:
    length = max(
        min(bucket(lengths[remaining[0]], length_bucket), max_length), lengths[remaining[0]]
    )
    rows: list[list] = []  # [used slots, request indices]
    rest = []
    for i in remaining:
      row = next((r for r in rows if r[0] + lengths[i] <= length), None)
      if row is None and len(rows) < rows_per_call:
        row = [0, []]
        rows.append(row)
      if row is None:
        rest.append(i)
      else:
        row[0] += lengths[i]
        row[1].append(i)
    calls.append((length, [members for _, members in rows]))
    remaining = rest
  return calls


@functools.lru_cache(maxsize=8)
def _next_token_logprobs_fn(config: ModelConfig):
  model = LlamaDecoder(config)

  def fn(params, tokens, segment_ids):
    positions = positions_from_segment_ids(segment_ids)
    hidden = model.apply({"params": params}, tokens, positions, segment_ids, return_hidden=True)
    logits = model.apply({"params": params}, hidden[:, -1:], method=LlamaDecoder.logits_from_hidden)
    return jax.nn.log_softmax(logits[:, 0].astype(jnp.float32), axis=-1)

  return jax.jit(fn)


def _padded(values: Sequence[int], size: int) -> np.ndarray:
  out = np.zeros((size,), np.int32)
  out[: len(values)] = values
  return out


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
    batch_size: rows per forward pass (each row holds as many requests as fit).
    length_bucket: the smallest row length; longer rows are bucketed (`bucket`).
    bos: "auto" (follow the tokenizer), "true" or "false"; see `resolve_bos`.
    max_length: the longest sequence one forward pass sees (lm-eval's `max_length`): the rolling
      window of perplexity, and the left-truncation limit of choice prompts. Default: the model's
      `max_position_embeddings`.
    stride: tokens predicted per rolling window after the first (default `max_length`).
    logits_chunk: positions projected onto the vocabulary at a time.
    vocab_block: vocabulary entries per block of that projection (None: the whole vocabulary at
      once); blocks are exact (`_blocked_target_scores`).
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
      logits_chunk: int = 512,
      vocab_block: int | None = 4096,
      render_chat=None,
  ):
    self.config, self.params, self.tokenizer = config, params, tokenizer
    self.batch_size, self.length_bucket = batch_size, length_bucket
    self.max_length = max_length or config.max_position_embeddings
    self.stride = stride or self.max_length
    if not 1 <= self.stride <= self.max_length:
      raise ValueError(f"stride={stride}; expected 1 <= stride <= max_length ({self.max_length})")
    self.add_bos = resolve_bos(tokenizer, bos)
    self.logits_chunk, self.vocab_block = logits_chunk, vocab_block
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

    Requests are packed back to back into rows (`pack_requests`, each its own segment: it sees
    only itself, and its positions start at 0 as in a forward pass of its own). Requests that
    differ only in their last target (the choices of one prompt whose answers are one token, as
    lm-eval's one-token continuation cache finds them) share one forward pass.
    """
    groups: dict = {}
    for i, (inputs, targets) in enumerate(requests):
      groups.setdefault((tuple(inputs), tuple(targets[:-1])), []).append(i)
    members = list(groups.values())
    unique = [requests[m[0]] for m in members]
    vocab_block = self.vocab_block
    head = head_matrix(self.config, self.params)
    if head is not None and not _on_one_device(head[0]):
      vocab_block = None  # a sharded head: one block (slicing it would gather it per block)
    out: list = [None] * len(requests)
    lengths = [len(x) for x, _ in unique]
    for length, rows in pack_requests(
        lengths, self.batch_size, self.length_bucket, self.max_length
    ):
      num_rows = min(self.batch_size, bucket(len(rows), 1))
      tokens = np.full((num_rows, length), self.pad_id, np.int32)
      segs = np.zeros((num_rows, length), np.int32)
      target_index, target_ids, last_index, where = [], [], [], []
      for r, row in enumerate(rows):
        p = 0
        for s, u in enumerate(row):
          x, t = unique[u]
          tokens[r, p : p + len(x)], segs[r, p : p + len(x)] = x, s + 1
          end = r * length + p + len(x)
          where.append((u, len(target_index), len(last_index) if len(members[u]) > 1 else None))
          target_index.extend(range(end - len(t), end))
          target_ids.extend(t)
          if len(members[u]) > 1:
            last_index.append(end - 1)
          p += len(x)
      num_targets = bucket(len(target_index), 64)
      chunk = min(self.logits_chunk, num_targets)
      num_targets = round_up(num_targets, chunk)
      num_last = bucket(len(last_index), 8) if last_index else 0
      fn = _packed_logprobs_fn(self.config, num_targets, chunk, num_last, vocab_block)
      logp, greedy, last = to_host(
          fn(
              self.params,
              tokens,
              segs,
              _padded(target_index, num_targets),
              _padded(target_ids, num_targets),
              _padded(last_index, num_last),
          )
      )
      for u, first, last_row in where:
        n = len(unique[u][1])
        for j in members[u]:
          lp, hit = logp[first : first + n].copy(), greedy[first : first + n].copy()
          if last_row is not None:  # the shared pass: this member's own last token
            token = requests[j][1][-1]
            lp[-1], hit[-1] = last[last_row, token], int(np.argmax(last[last_row])) == token
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
