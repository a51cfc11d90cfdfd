"""Grain `IterDataset` that packs chunks of examples into rows, with a small exact checkpoint.

The parent yields chunks (lists) of examples. The iterator's state is where the next row starts:
the parent's state before the chunk holding that example, the example's index in the chunk and
the token offset into it. Restoring re-reads that chunk and continues, so a resumed stream equals
an uninterrupted one; the state stays a few integers however long the pending example is.
"""

from __future__ import annotations

import collections
import copy
from typing import Any

import grain

from langshift.data import packing


class PackedIterDataset(grain.IterDataset):
  """Rows of `seq_len` (see `langshift.data.packing`) from a dataset of example chunks."""

  def __init__(
      self,
      parent: grain.IterDataset,
      seq_len: int,
      mode: str = "concat",
      *,
      overlong: str = "split",
      boundary_remainder: str = "pad",
  ):
    super().__init__(parent)
    if seq_len < 2:
      raise ValueError(f"seq_len={seq_len}: a row needs at least an input and a target")
    self._options = dict(
        seq_len=seq_len, mode=mode, overlong=overlong, boundary_remainder=boundary_remainder
    )

  def __iter__(self) -> grain.DatasetIterator:
    return _PackedIterator(self._parent.__iter__(), **self._options)

  def __str__(self):
    return f"PackedIterDataset({self._options})"


class _PackedIterator(grain.DatasetIterator):

  def __init__(
      self,
      parent: grain.DatasetIterator,
      *,
      seq_len: int,
      mode: str,
      overlong: str,
      boundary_remainder: str,
  ):
    super().__init__(parent)
    self._seq_len = seq_len
    self._take = dict(mode=mode, overlong=overlong, boundary_remainder=boundary_remainder)
    self._chunks: collections.deque[tuple[Any, list]] = collections.deque()
    self._head = 0  # index, in the first buffered chunk, of the example the next row starts in
    self._offset = 0  # token offset into that example
    self._exhausted = False

  def _example_at(self, j: int):
    index, c = self._head + j, 0
    while True:
      while c >= len(self._chunks):
        if self._exhausted:
          return None
        state = copy.deepcopy(self._parent.get_state())
        try:
          chunk = next(self._parent)
        except StopIteration:
          self._exhausted = True
          return None
        self._chunks.append((state, chunk))
      size = len(self._chunks[c][1])
      if index < size:
        return self._chunks[c][1][index]
      index, c = index - size, c + 1

  def __next__(self):
    pieces, consumed, offset = packing.take_row(
        self._example_at, self._offset, self._seq_len, **self._take
    )
    if not pieces:
      raise StopIteration
    row = packing.row_from_pieces(pieces, self._example_at, self._seq_len)
    self._head += consumed
    self._offset = offset
    while self._chunks and self._head >= len(self._chunks[0][1]):
      self._head -= len(self._chunks.popleft()[1])
    return row

  def get_state(self) -> dict[str, Any]:
    if self._chunks:
      parent = self._chunks[0][0]
    else:
      parent = self._parent.get_state()
    return {"parent": copy.deepcopy(parent), "example": self._head, "offset": self._offset}

  def set_state(self, state: dict[str, Any]) -> None:
    self._parent.set_state(state["parent"])
    self._chunks.clear()
    self._head, self._offset = int(state["example"]), int(state["offset"])
    self._exhausted = False

  def __str__(self):
    return f"PackedIterator(seq_len={self._seq_len}, {self._take})"
