"""Tokenized examples with explicit boolean loss masks.

An example is a dict of numpy arrays:
  tokens      int32 [n]  token ids of one document or conversation
  mask        bool  [n]  mask[t]: token t is a training target (predicted from tokens < t)
  boundaries  int32 [k]  token indices where a packed row may start (0 and, for plain text,
                         every paragraph start): LEP-style block packing

Masks are computed on the tokenization of the whole rendered string (exactly the ids
`apply_chat_template(..., tokenize=True)` gives), by mapping character spans onto tokens through
the tokenizer's offsets: a token is in a span when its characters overlap it (a zero-width
byte-fallback token counts at its position). This matches transformers' `assistant_masks`.

Memory: texts go to the tokenizer in calls of at most `TOKENIZE_CHARS` characters (a batched
call's buffers grow with the text it holds, offsets included); a document too long for that
arrives here already cut into pieces (`sources.DocumentPieces`): only its first piece gets BOS
and only its last EOS.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from langshift.data import formatting
from langshift.data.sources import PIECE_KEY, RecordError
from langshift.tokenization import chat_templates

Example = dict[str, np.ndarray]

# Characters per batched tokenizer call (a few times the largest document piece).
TOKENIZE_CHARS = 1 << 22


def _in_calls(texts: Sequence[str], encode) -> list:
  """`encode(texts)`, in consecutive calls of at most TOKENIZE_CHARS characters (or one text)."""
  out, start, size = [], 0, 0
  for i, text in enumerate(texts):
    if i > start and size + len(text) > TOKENIZE_CHARS:
      out.extend(encode(list(texts[start:i])))
      start, size = i, 0
    size += len(text)
  if start < len(texts):
    out.extend(encode(list(texts[start:])))
  return out


def token_mask_from_spans(
    offsets: Sequence[tuple[int, int]],
    spans: Sequence[tuple[int, int]],
) -> np.ndarray:
  """bool[len(offsets)]: tokens whose character range overlaps one of `spans`.

  Raises ChatTemplateError if a non-empty span covers no token.
  """
  off = np.asarray(offsets, np.int64).reshape(-1, 2)
  start, end = off[:, 0], off[:, 1]
  mask = np.zeros(len(off), bool)
  for s, e in spans:
    if e <= s:
      continue
    hit = np.where(end > start, (start < e) & (end > s), (start >= s) & (start < e))
    if not hit.any():
      raise chat_templates.ChatTemplateError(f"loss span [{s}, {e}) covers no token")
    mask |= hit
  return mask


def paragraph_starts(text: str) -> list[int]:
  """Character offsets where a paragraph starts: 0 and after every run of newlines."""
  starts, i, n = [0], text.find("\n"), len(text)
  while i != -1:
    j = i
    while j < n and text[j] in "\r\n":
      j += 1
    if j < n:
      starts.append(j)
    i = text.find("\n", j)
  return starts


def token_index_of_chars(offsets: Sequence[tuple[int, int]], chars: Sequence[int]) -> np.ndarray:
  """For each character offset, the first token starting at or after it (searchsorted)."""
  token_starts = np.asarray([o[0] for o in offsets], np.int64)
  return np.searchsorted(token_starts, np.asarray(chars, np.int64), side="left")


def text_examples(
    texts: Sequence[str],
    tokenizer,
    *,
    add_bos: bool,
    add_eos: bool,
    with_boundaries: bool,
    pieces: Sequence[tuple[int, int] | None] | None = None,
) -> list[Example]:
  """Plain-text documents: [bos] + text + [eos], loss on every token. `pieces[i]`: text i is
  piece k of n of a longer document (BOS on its first piece only, EOS on its last only)."""
  if add_bos and tokenizer.bos_id is None or add_eos and tokenizer.eos_id is None:
    raise ValueError(f"{tokenizer}: add_bos/add_eos requested but the tokenizer has no BOS/EOS")
  pieces = pieces or [None] * len(texts)

  def ends(piece):
    first = piece is None or piece[0] == 0
    last = piece is None or piece[0] == piece[1] - 1
    prefix = [tokenizer.bos_id] if add_bos and first else []
    return prefix, [tokenizer.eos_id] if add_eos and last else []

  out = []
  if with_boundaries:
    encoded = _in_calls(texts, tokenizer.encode_batch_with_offsets)
    for text, piece, (ids, offsets) in zip(texts, pieces, encoded):
      prefix, suffix = ends(piece)
      starts = token_index_of_chars(offsets, paragraph_starts(text)) + len(prefix)
      starts[0] = 0  # the first paragraph's row starts at BOS
      out.append(_example(prefix + list(ids) + suffix, None, np.unique(starts)))
  else:
    for piece, ids in zip(pieces, _in_calls(texts, tokenizer.encode_batch)):
      prefix, suffix = ends(piece)
      out.append(_example(prefix + list(ids) + suffix, None, None))
  return out


def formatted_examples(formatted: Sequence[formatting.Formatted], tokenizer) -> list[Example]:
  """Rendered templates with their loss spans (None = whole sequence) -> examples."""
  encoded = _in_calls([text for text, _ in formatted], tokenizer.encode_batch_with_offsets)
  out = []
  for (_, spans), (ids, offsets) in zip(formatted, encoded):
    mask = None if spans is None else token_mask_from_spans(offsets, spans)
    out.append(_example(ids, mask, None))
  return out


def _example(ids, mask, boundaries) -> Example:
  tokens = np.asarray(ids, np.int32)
  return {
      "tokens": tokens,
      "mask": np.ones(len(tokens), bool) if mask is None else np.asarray(mask, bool),
      "boundaries": np.zeros(1, np.int32)
      if boundaries is None
      else np.asarray(boundaries, np.int32),
  }


class ExampleBuilder:
  """Builds the examples of a chunk of `(source index, where, record)` items, batched per source.

  Bad records (missing fields, malformed messages, conversations whose assistant spans cannot be
  located) raise with their location, or are skipped and counted when `on_bad_record="skip"`.
  """

  def __init__(
      self,
      sources: Sequence[Any],
      tokenizer,
      data_config,
      *,
      template: str | None,
      bad_records: Sequence[Any],
  ):
    self._sources = list(sources)
    self._tokenizer = tokenizer
    self._cfg = data_config
    self._template = template
    self._bad = list(bad_records)
    self._special = dict(tokenizer.special_tokens_map)
    self._boundaries = data_config.packing == "boundary"
    for src in self._sources:
      if src.template == "none" and src.loss == "assistant":
        raise ValueError(
            f"source {src.name}: loss='assistant' needs a chat template "
            "(template=chat/pair/inscp/response)"
        )

  def __call__(
      self,
      items: Sequence[tuple[int, str, Mapping[str, Any] | None] | None],
  ) -> list[Example]:
    slots: list[Example | None] = [None] * len(items)
    by_source: dict[int, list[tuple[int, str, Any]]] = {}
    for pos, item in enumerate(items):
      if item is not None and item[2] is not None:
        by_source.setdefault(item[0], []).append((pos, item[1], item[2]))
    for s, group in by_source.items():
      for pos, example in self._build(s, group):
        slots[pos] = example
    return [e for e in slots if e is not None and len(e["tokens"])]

  def _build(self, s: int, group):
    src = self._sources[s]
    kept, values, pieces = [], [], []
    for pos, where, record in group:
      try:
        if src.template == "none":
          values.append(formatting.record_field(record, src.text_field, where))
          pieces.append(record.get(PIECE_KEY))
        else:
          values.append(
              formatting.format_record(
                  record, where, src, self._template, self._special, self._cfg.inscp
              )
          )
        kept.append(pos)
      except (RecordError, chat_templates.ChatTemplateError) as e:
        if self._cfg.on_bad_record != "skip":
          raise
        self._bad[s].skip(e)
    if not kept:
      return []
    if src.template == "none":
      examples = text_examples(
          values,
          self._tokenizer,
          add_bos=self._cfg.add_bos,
          add_eos=self._cfg.add_eos,
          with_boundaries=self._boundaries,
          pieces=pieces,
      )
    else:
      examples = formatted_examples(values, self._tokenizer)
    return zip(kept, examples)
