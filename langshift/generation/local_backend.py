"""`TextGenerator` over a langshift decoder: tokenise, schedule on the engine, detokenise.

`generate_tokens` runs continuous batching on the programs of `decode.py`: `batch_size` rows
("slots") decode together, and between `decode` calls every finished row is refilled with the
next waiting request (prefilled into that row alone), so a stream of requests keeps the batch
full instead of decoding padding until the longest answer of a static batch ends. Requests are
taken longest prompt first (similar lengths share a prefill and the longest compile up front),
and answers come back in request order. Shapes are bucketed (prompt length rounded up to
`length_bucket`, prefill groups of 2^k requests), so a stream compiles a handful of programs
rather than one per batch.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time
from collections.abc import Callable, Sequence

import jax
import numpy as np

from langshift.generation.chat_render import chat_renderer
from langshift.generation.decode import DecodeSpec, make_engine, stop_token_ids_from_config
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


@dataclasses.dataclass
class GenerationStats:
  """Where the last `generate_tokens` call spent its time (host clock, device work finished)."""

  requests: int = 0
  prompt_tokens: int = 0
  generated_tokens: int = 0  # stop tokens included
  refills: int = 0  # requests started in a row while other rows were mid-answer
  prefill_calls: int = 0
  prefill_s: float = 0.0
  decode_calls: int = 0
  decode_steps: int = 0  # one model call for every row of the batch
  decode_s: float = 0.0


def _prefill_groups(requests: Sequence[int], lengths: Sequence[int], bucket: int, cap: int):
  """Requests (in order) -> groups sharing one prefill call: same padded length, 2^k requests
  (at most `cap`), so no call pads with dummy rows and few shapes get compiled."""
  by_length: dict[int, list[int]] = {}
  for r in requests:
    by_length.setdefault(round_up(lengths[r], bucket), []).append(r)
  groups = []
  for padded, members in by_length.items():
    while members:
      size = min(cap, 1 << (len(members).bit_length() - 1))
      groups.append((padded, members[:size]))
      members = members[size:]
  return groups


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
      continuous_batching: bool = True,
      sort_by_length: bool = True,
      kv_block: int = 0,
      max_prefill_rows: int | None = None,
      refill_fraction: float = 0.0,
  ):
    """`batch_size`: rows decoding together (under a mesh, a multiple of the devices the rules
    spread `activation_batch` over). `continuous_batching=False` runs static batches (a batch
    ends when its longest answer does) and `sort_by_length=False` keeps request order: both only
    to measure what they buy. `kv_block` > 0 makes attention read only the cache slots up to the
    longest row, rounded up to this many (0: the whole cache; slicing the cache cost more than
    it saved on CPU, docs/benchmarks.md). `max_prefill_rows`: most prompts prefilled in one
    call (default `batch_size`). `refill_fraction`: a decode call returns for refills once this
    share of the rows (at least one, at most the waiting requests) has finished, so refills
    come in larger prefill groups; 0 refills as soon as one row is free."""
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
    self.continuous_batching, self.sort_by_length = continuous_batching, sort_by_length
    self.kv_block = kv_block
    self.max_prefill_rows = max_prefill_rows or batch_size
    if not 0.0 <= refill_fraction <= 1.0:
      raise ValueError(f"LocalGenerator: refill_fraction={refill_fraction} must be in [0, 1]")
    self.refill_fraction = refill_fraction
    for name, value in (("batch_size", batch_size), ("length_bucket", length_bucket)):
      if value < 1:
        raise ValueError(f"LocalGenerator: {name}={value} must be at least 1")
    self.last_stats = GenerationStats()

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
    prompts = [list(t) for t in token_lists]
    for i, ids in enumerate(prompts):
      if not ids:
        raise ValueError(f"generate_tokens: request {i} has an empty prompt")
    self.last_stats = stats = GenerationStats(
        requests=len(prompts), prompt_tokens=sum(len(p) for p in prompts)
    )
    if not prompts or options.max_new_tokens < 1:
      return [[] for _ in prompts]
    spec = DecodeSpec(
        options.max_new_tokens,
        SamplingParams(options.temperature, options.top_k, options.top_p),
        self.stop_token_ids,
        self.processors,
        self.pad_id,
    )
    lengths = [len(p) for p in prompts]
    capacity = round_up(max(lengths) + spec.max_new_tokens, self.length_bucket)
    engine = make_engine(self.config, spec, self.batch_size, capacity, self.mesh, self.rules)
    rng = jax.random.key(options.seed)
    order = range(len(prompts))
    if self.sort_by_length:
      order = sorted(order, key=lambda r: -lengths[r])
    waiting = collections.deque(order)
    rows = self.batch_size
    in_row = [-1] * rows  # request decoding in each row
    position = [0] * rows  # each row's next cache slot (host copy, for the attention bucket)
    results: list[list[int] | None] = [None] * len(prompts)
    state = engine.init()
    decode_params = engine.decode_weights(self.params)  # a weight-major copy while we run
    while True:
      free = [b for b in range(rows) if in_row[b] < 0]
      if waiting and free and (self.continuous_batching or len(free) == rows):
        starting = [waiting.popleft() for _ in range(min(len(free), len(waiting)))]
        if len(free) < rows:
          stats.refills += len(starting)
        state = self._prefill(engine, state, starting, free, prompts, rng, stats)
        for r, b in zip(starting, free):
          in_row[b], position[b] = r, lengths[r]
      busy = [b for b in range(rows) if in_row[b] >= 0]
      if not busy:
        break
      longest = max(position[b] for b in busy)
      kv_len, max_steps = capacity, capacity - longest
      if self.kv_block:
        kv_len = min(capacity, round_up(longest + self.kv_block, self.kv_block))
        max_steps = kv_len - longest  # every row's position stays below kv_len
      start = time.perf_counter()
      state, steps = engine.decode(
          decode_params,
          state,
          rng,
          np.int32(max_steps),
          np.int32(self._min_free(len(waiting))),
          kv_len=None if kv_len >= capacity else kv_len,
      )
      active, n_out, stopped, out, steps = to_host(
          (state.active, state.n_out, state.stopped, state.out, steps)
      )
      stats.decode_s += time.perf_counter() - start
      stats.decode_calls += 1
      stats.decode_steps += int(steps)
      for b in busy:
        r = in_row[b]
        position[b] = lengths[r] + int(n_out[b]) - 1
        if not active[b]:
          n = int(n_out[b])
          stats.generated_tokens += n
          results[r] = out[b, : n - int(stopped[b])].tolist()
          in_row[b] = -1
    return results

  def _min_free(self, waiting: int) -> int:
    """Finished rows at which a decode call returns to refill them (> rows: never)."""
    if not (self.continuous_batching and waiting):
      return self.batch_size + 1
    wanted = max(1, math.ceil(self.refill_fraction * self.batch_size))
    return min(wanted, waiting)

  def _prefill(self, engine, state, requests, free_rows, prompts, rng, stats):
    """Prefills `requests` into `free_rows` (in order), a few shape-bucketed calls."""
    row_of = dict(zip(requests, free_rows))
    lengths = [len(p) for p in prompts]
    for padded, group in _prefill_groups(
        requests, lengths, self.length_bucket, self.max_prefill_rows
    ):
      tokens = np.full((len(group), padded), self.pad_id, np.int32)
      for i, r in enumerate(group):
        tokens[i, : lengths[r]] = prompts[r]
      start = time.perf_counter()
      state = engine.prefill(
          self.params,
          state,
          tokens,
          np.asarray([lengths[r] for r in group], np.int32),
          np.asarray([row_of[r] for r in group], np.int32),
          np.asarray(group, np.int32),
          rng,
      )
      jax.block_until_ready(state.positions)
      stats.prefill_s += time.perf_counter() - start
      stats.prefill_calls += 1
    return state
