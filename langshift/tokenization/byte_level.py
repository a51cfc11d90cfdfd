"""The byte <-> printable-unicode alphabet of byte-level BPE (GPT-2, Llama-3, Qwen2, SmolLM2).

Byte-level vocabularies store each byte as one printable character so that merges can be written
as text: printable latin-1 bytes stand for themselves, the other 68 bytes are shifted to U+0100..
(space becomes `Ġ`, newline `Ċ`). This is the table `tokenizers.pre_tokenizers.ByteLevel` uses.
"""

from __future__ import annotations

import functools


@functools.cache
def byte_to_unicode() -> dict[int, str]:
  printable = (
      list(range(ord("!"), ord("~") + 1))
      + list(range(ord("¡"), ord("¬") + 1))
      + list(range(ord("®"), ord("ÿ") + 1))
  )
  table = {b: chr(b) for b in printable}
  shift = 0
  for b in range(256):
    if b not in table:
      table[b] = chr(256 + shift)
      shift += 1
  return table


@functools.cache
def unicode_to_byte() -> dict[str, int]:
  return {c: b for b, c in byte_to_unicode().items()}


def bytes_to_byte_level(data: bytes) -> str:
  table = byte_to_unicode()
  return "".join(table[b] for b in data)


def byte_level_to_bytes(token: str) -> bytes:
  """Raises KeyError for a character outside the alphabet (e.g. an added token's raw text)."""
  table = unicode_to_byte()
  return bytes(table[c] for c in token)
