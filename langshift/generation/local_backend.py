"""`TextGenerator` over a langshift decoder: tokenise, left-pad to fixed shapes, decode, detokenise.

Shapes are bucketed (batch padded to `batch_size`, prompt length rounded up to `length_bucket`) so
a stream of requests compiles a handful of programs rather than one per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import numpy as np

from langshift.generation.chat_render import chat_renderer
from langshift.generation.decode import make_generate_fn, stop_token_ids_from_config
from langshift.generation.interface import GenerationOptions, Message, truncate_at_stop
from langshift.generation.sampling import SamplingParams
from langshift.models.config import ModelConfig
from langshift.parallel.host_transfer import to_host


def left_pad(token_lists: Sequence[Sequence[int]], length: int, batch: int, pad_id: int):
  """(tokens, segment_ids) int32 [batch, length]; rows past len(token_lists) are 1-token dummies."""
  tokens = np.full((batch, length), pad_id, np.int32)
  segs = np.zeros((batch, length), np.int32)
  for i in range(batch):
    ids = list(token_lists[i]) if i < len(token_lists) else [pad_id]
    if len(ids) > length:
      raise ValueError(f"prompt of {len(ids)} tokens does not fit the {length}-token bucket")
    if ids:
      tokens[i, length - len(ids) :] = ids
      segs[i, length - len(ids) :] = 1
  return tokens, segs


def round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


class LocalGenerator:
  """Generation with in-memory params; satisfies `TextGenerator`."""

  def __init__(
      self,
      config: ModelConfig,
      params,
      tokenizer,
      *,
      batch_size: int = 8,
      length_bucket: int = 64,
      max_prompt_length: int | None = None,
      stop_token_ids: Sequence[int] | None = None,
      processors: Sequence = (),
      add_bos: bool = True,
      render_chat: Callable[[Sequence[Message]], str] | None = None,
      mesh=None,
      rules=None,
  ):
    self.config, self.params, self.tokenizer = config, params, tokenizer
    self.batch_size, self.length_bucket = batch_size, length_bucket
    self.max_prompt_length = max_prompt_length
    if stop_token_ids is None:
      stop_token_ids = tuple(getattr(tokenizer, "eos_ids", ())) or stop_token_ids_from_config(
          config
      )
    self.stop_token_ids = tuple(int(i) for i in stop_token_ids)
    self.processors = tuple(processors)
    self.add_bos = add_bos
    self._render_chat = render_chat
    # Rules from a ConfigDict arrive as lists; the compiled-function cache needs them hashable.
    self.mesh = mesh
    self.rules = (
        None
        if rules is None
        else tuple((name, tuple(axes) if isinstance(axes, list) else axes) for name, axes in rules)
    )
    self.pad_id = config.pad_token_id if config.pad_token_id is not None else 0

  def render_chat(self, messages: Sequence[Message]) -> str:
    render = self._render_chat or chat_renderer(self.tokenizer)
    return render(messages)

  def encode_prompt(self, text: str, add_bos: bool) -> list[int]:
    ids = list(self.tokenizer.encode(text))
    bos = getattr(self.tokenizer, "bos_id", None)
    if add_bos and bos is not None and (not ids or ids[0] != bos):
      ids = [bos] + ids
    if self.max_prompt_length and len(ids) > self.max_prompt_length:
      ids = ids[-self.max_prompt_length :]  # keep the end: it is what the model continues
    return ids

  def complete(self, prompts: Sequence[str], options: GenerationOptions) -> list[str]:
    return self._texts([self.encode_prompt(p, self.add_bos) for p in prompts], options)

  def chat(
      self, conversations: Sequence[Sequence[Message]], options: GenerationOptions
  ) -> list[str]:
    # The template writes BOS itself where the model expects it.
    prompts = [self.render_chat(c) for c in conversations]
    return self._texts([self.encode_prompt(p, add_bos=False) for p in prompts], options)

  def _texts(self, token_lists, options):
    outs = self.generate_tokens(token_lists, options)
    # Special tokens (a chat model's end-of-turn that is not a stop id) are not answer text.
    return [
        truncate_at_stop(self.tokenizer.decode(ids, skip_special_tokens=True), options.stop)
        for ids in outs
    ]

  def generate_tokens(
      self, token_lists: Sequence[Sequence[int]], options: GenerationOptions
  ) -> list[list[int]]:
    """New token ids per prompt, the stop token removed."""
    sampling = SamplingParams(options.temperature, options.top_k, options.top_p)
    fn = make_generate_fn(
        self.config,
        options.max_new_tokens,
        sampling,
        self.stop_token_ids,
        self.processors,
        self.pad_id,
        self.mesh,
        self.rules,
    )
    results = []
    for start in range(0, len(token_lists), self.batch_size):
      chunk = token_lists[start : start + self.batch_size]
      length = round_up(max(len(t) for t in chunk), self.length_bucket)
      tokens, segs = left_pad(chunk, length, self.batch_size, self.pad_id)
      rng = jax.random.fold_in(jax.random.key(options.seed), start)
      out = fn(self.params, tokens, segs, rng)
      toks, lengths, stopped = to_host(tuple(out))
      for i in range(len(chunk)):
        n = int(lengths[i]) - (1 if stopped[i] else 0)
        results.append(toks[i, :n].tolist())
    return results
