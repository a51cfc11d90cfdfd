"""Log-likelihood scoring with a langshift decoder: next-token distributions (choice tasks) and
per-token negative log-likelihood of texts (perplexity).

Batches are padded to fixed bucketed shapes and the jit-compiled functions are cached per model
config, so a trainer that evaluates every N steps with fresh params compiles nothing new.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from langshift.generation.chat_render import chat_renderer
from langshift.generation.local_backend import left_pad, round_up
from langshift.models.config import ModelConfig
from langshift.models.llama import LlamaDecoder, positions_from_segment_ids
from langshift.parallel.host_transfer import to_host


@functools.lru_cache(maxsize=8)
def _next_token_logprobs_fn(config: ModelConfig):
  model = LlamaDecoder(config)

  def fn(params, tokens, segment_ids):
    positions = positions_from_segment_ids(segment_ids)
    logits = model.apply({"params": params}, tokens, positions, segment_ids)
    return jax.nn.log_softmax(logits[:, -1].astype(jnp.float32), axis=-1)

  return jax.jit(fn)


@functools.lru_cache(maxsize=8)
def _token_nll_fn(config: ModelConfig):
  model = LlamaDecoder(config)

  def fn(params, tokens, segment_ids):
    logits = model.apply({"params": params}, tokens, None, segment_ids).astype(jnp.float32)
    logp = jax.nn.log_softmax(logits[:, :-1], axis=-1)
    nll = -jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]
    weights = (segment_ids[:, 1:] > 0).astype(jnp.float32)
    return jnp.sum(nll * weights, axis=1), jnp.sum(weights, axis=1)

  return jax.jit(fn)


class LocalScorer:
  """Scores prompts and texts with in-memory params."""

  def __init__(
      self,
      config: ModelConfig,
      params,
      tokenizer,
      *,
      batch_size: int = 8,
      length_bucket: int = 64,
      max_length: int | None = None,
      add_bos: bool = True,
      render_chat=None,
  ):
    self.config, self.params, self.tokenizer = config, params, tokenizer
    self.batch_size, self.length_bucket = batch_size, length_bucket
    self.max_length = max_length or config.max_position_embeddings
    self.add_bos = add_bos
    self._render_chat = render_chat
    self.pad_id = config.pad_token_id if config.pad_token_id is not None else 0

  def encode(self, text: str) -> list[int]:
    return list(self.tokenizer.encode(text))

  def render_chat(self, messages) -> str:
    return (self._render_chat or chat_renderer(self.tokenizer))(messages)

  def _ids(self, text: str, add_bos: bool) -> list[int]:
    ids = self.encode(text)
    bos = getattr(self.tokenizer, "bos_id", None)
    if add_bos and bos is not None and (not ids or ids[0] != bos):
      ids = [bos] + ids
    return ids

  def next_token_logprobs(self, prompts: Sequence[str], chat: bool = False) -> np.ndarray:
    """log p(next token | prompt) [len(prompts), V]. Chat prompts carry their own BOS."""
    fn = _next_token_logprobs_fn(self.config)
    rows = []
    for start in range(0, len(prompts), self.batch_size):
      ids = [
          self._ids(p, self.add_bos and not chat)[-self.max_length :]
          for p in prompts[start : start + self.batch_size]
      ]
      length = min(round_up(max(len(i) for i in ids), self.length_bucket), self.max_length)
      tokens, segs = left_pad(ids, length, self.batch_size, self.pad_id)
      rows.append(to_host(fn(self.params, tokens, segs))[: len(ids)])
    return np.concatenate(rows, axis=0)

  def token_nll(self, texts: Sequence[str]) -> list[tuple[float, int]]:
    """(sum of NLL in nats, number of predicted tokens) per text; the first token (BOS when the
    tokenizer has one) is context only. Texts longer than max_length are cut."""
    fn = _token_nll_fn(self.config)
    out = []
    for start in range(0, len(texts), self.batch_size):
      ids = [
          self._ids(t, self.add_bos)[: self.max_length]
          for t in texts[start : start + self.batch_size]
      ]
      length = min(round_up(max(len(i) for i in ids), self.length_bucket), self.max_length)
      tokens = np.full((self.batch_size, length), self.pad_id, np.int32)
      segs = np.zeros((self.batch_size, length), np.int32)
      for i, row in enumerate(ids):  # right padding: the loss needs no position shift
        tokens[i, : len(row)], segs[i, : len(row)] = row, 1
      nll, count = to_host(fn(self.params, tokens, segs))
      out.extend((float(nll[i]), int(count[i])) for i in range(len(ids)))
    return out
