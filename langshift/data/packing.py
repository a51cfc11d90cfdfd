"""Packing of examples into fixed-length rows with segment ids, positions and shifted targets.

Pure functions over examples (`langshift.data.examples`). A row is a dict of [seq_len] arrays:
  inputs        int32    token ids
  targets       int32    inputs[t + 1] within the same segment, 0 elsewhere
  segment_ids   int32    1..n per packed example (piece) in the row, 0 on padding
  positions     int32    0, 1, ... restarting at every segment
  loss_weights  float32  mask[t + 1] within the segment; 0 on the last token of a segment and
                         on padding. So the loss at t, CE(logits[t], targets[t]) * loss_weights[t],
                         trains exactly the tokens the example's mask marks: the first assistant
                         token is trained (from the last prompt position), no prompt token is.

Modes (`take_row`):
  concat    the token stream is cut into full rows; an example may continue in the next row (its
            continuation is a new segment, positions restart)
  greedy    whole examples, next-fit: a row is closed (padded) when the next example does not fit
  boundary  LEP (Tikhomirov & Chernyshev 2024, arXiv:2412.21140): rows start at an example or
            paragraph boundary; a paragraph that does not fit moves to the next row
            (`boundary_remainder="pad"`) or fills the row and its rest is dropped ("drop")
  none      one example per row
An example longer than a row (a paragraph, for boundary) is cut into row-sized pieces
(`overlong="split"`) or truncated ("truncate").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Example = dict[str, np.ndarray]
Piece = tuple[int, int, int]  # (example index relative to the row's first, start, end)


def take_row(
    example_at: Callable[[int], Example | None],
    offset: int,
    seq_len: int,
    mode: str = "concat",
    *,
    overlong: str = "split",
    boundary_remainder: str = "pad",
) -> tuple[list[Piece], int, int]:
  """Chooses the pieces of the next row.

  `example_at(j)` is the j-th example from the one the row starts in (None past the end of the
  stream); the row starts at token `offset` of example 0. Returns (pieces, number of examples
  fully consumed, token offset into the next row's first example).
  """
  pieces: list[Piece] = []
  used, j, off = 0, 0, offset

  def take(end):
    nonlocal used
    if end <= off:
      return
    if pieces and pieces[-1][0] == j and pieces[-1][2] == off:  # contiguous: same segment
      pieces[-1] = (j, pieces[-1][1], end)
    else:
      pieces.append((j, off, end))
    used += end - off

  while used < seq_len:
    example = example_at(j)
    if example is None:
      break
    n, room = len(example["tokens"]), seq_len - used
    if n - off <= room:
      take(n)
      j, off = j + 1, 0
      if mode == "none":
        break
      continue
    if mode == "concat":
      take(off + room)
      off += room
      break
    if mode == "boundary":
      bounds = example["boundaries"]
      fitting = bounds[(bounds > off) & (bounds <= off + room)]
      if len(fitting):
        take(int(fitting.max()))
        off = int(fitting.max())
        room = seq_len - used
      if used and (boundary_remainder == "pad" or not room):
        break
      if used:  # "drop": fill the row, continue at the next paragraph
        take(off + room)
        j, off = _next_boundary(example, j, off)
        break
    elif mode == "greedy" and used:
      break
    # An overlong example (paragraph) alone in the row.
    take(off + seq_len)
    if overlong == "truncate":
      j, off = (j + 1, 0) if mode != "boundary" else _next_boundary(example, j, off)
    else:
      off += seq_len
    break
  return pieces, j, off


def _next_boundary(example: Example, j: int, off: int) -> tuple[int, int]:
  later = example["boundaries"][example["boundaries"] > off]
  return (j, int(later.min())) if len(later) else (j + 1, 0)


def assemble_row(
    segments: Sequence[tuple[np.ndarray, np.ndarray]],
    seq_len: int,
) -> dict[str, np.ndarray]:
  """Lays `(tokens, mask)` segments out in a row and shifts targets within each segment."""
  row = {k: np.zeros(seq_len, np.int32) for k in ("inputs", "targets", "segment_ids", "positions")}
  row["loss_weights"] = np.zeros(seq_len, np.float32)
  p = 0
  for k, (tokens, mask) in enumerate(segments, start=1):
    n = len(tokens)
    if p + n > seq_len:
      raise ValueError(f"segments overflow the row: {p + n} > {seq_len}")
    row["inputs"][p : p + n] = tokens
    row["segment_ids"][p : p + n] = k
    row["positions"][p : p + n] = np.arange(n)
    row["targets"][p : p + n - 1] = tokens[1:]
    row["loss_weights"][p : p + n - 1] = mask[1:]
    p += n
  return row


def row_from_pieces(
    pieces: Sequence[Piece], example_at: Callable[[int], Example], seq_len: int
) -> dict[str, np.ndarray]:
  segments = [(example_at(j)["tokens"][a:b], example_at(j)["mask"][a:b]) for j, a, b in pieces]
  return assemble_row(segments, seq_len)


def pack_examples(
    examples: Sequence[Example],
    seq_len: int,
    mode: str = "concat",
    *,
    overlong: str = "split",
    boundary_remainder: str = "pad",
) -> list[dict[str, np.ndarray]]:
  """Packs a finite list of examples into rows (the last row padded)."""
  rows, first, offset = [], 0, 0
  while True:

    def example_at(j, first=first):
      return examples[first + j] if first + j < len(examples) else None

    pieces, consumed, offset = take_row(
        example_at, offset, seq_len, mode, overlong=overlong, boundary_remainder=boundary_remainder
    )
    if not pieces:
      return rows
    rows.append(row_from_pieces(pieces, example_at, seq_len))
    first += consumed
