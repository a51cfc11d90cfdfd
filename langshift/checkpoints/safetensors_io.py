"""Reading and writing safetensors files with numpy memory maps.

We read the format directly (an 8-byte header length, a JSON header, raw little-endian data)
rather than through `safetensors.numpy` because (1) numpy has no bfloat16 without `ml_dtypes`,
which that module does not use, and (2) a memory map lets each host read only the slices its
devices own, so an 8B checkpoint is never materialised whole on one host. Files written here are
read by the reference `safetensors` library (tested through `transformers.from_pretrained`).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable, Mapping

import ml_dtypes
import numpy as np

DTYPES = {
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
_NAMES = {v: k for k, v in DTYPES.items()}
INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"


class CheckpointFormatError(ValueError):
  """A checkpoint file is missing, truncated or contradicts its header/config."""


class SafetensorsFile:
  """Lazy view of one .safetensors file: `get(name)` returns a read-only memory-mapped array."""

  def __init__(self, path: str):
    self.path = path
    try:
      size = os.path.getsize(path)
      with open(path, "rb") as f:
        raw_len = f.read(8)
        if len(raw_len) < 8:
          raise CheckpointFormatError(f"{path}: truncated safetensors file (no header)")
        (header_len,) = struct.unpack("<Q", raw_len)
        if header_len > size - 8:
          raise CheckpointFormatError(
              f"{path}: truncated safetensors file (header of {header_len} bytes, file "
              f"has {size})"
          )
        header = json.loads(f.read(header_len))
    except FileNotFoundError:
      raise CheckpointFormatError(f"{path}: weight file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise CheckpointFormatError(f"{path}: corrupt safetensors header ({e})") from None
    self.metadata = header.pop("__metadata__", {}) or {}
    self._header = header
    self._data_start = 8 + header_len
    data_len = size - self._data_start
    for name, info in header.items():
      begin, end = info["data_offsets"]
      if info["dtype"] not in DTYPES:
        raise CheckpointFormatError(
            f"{path}: tensor {name!r} has unsupported dtype " f"{info['dtype']!r}"
        )
      expected = int(np.prod(info["shape"], dtype=np.int64)) * DTYPES[info["dtype"]].itemsize
      if end - begin != expected:
        raise CheckpointFormatError(
            f"{path}: tensor {name!r} spans {end - begin} bytes but "
            f"shape {info['shape']} needs {expected}"
        )
      if end > data_len:
        raise CheckpointFormatError(
            f"{path}: truncated safetensors file (tensor {name!r} ends at "
            f"byte {end} of {data_len} data bytes)"
        )
    self._mmap = None

  def keys(self) -> list[str]:
    return list(self._header)

  def shape(self, name: str) -> tuple[int, ...]:
    return tuple(self._header[name]["shape"])

  def dtype(self, name: str) -> np.dtype:
    return DTYPES[self._header[name]["dtype"]]

  def get(self, name: str) -> np.ndarray:
    if self._mmap is None:
      self._mmap = np.memmap(self.path, dtype=np.uint8, mode="r")
    info = self._header[name]
    begin, end = info["data_offsets"]
    raw = self._mmap[self._data_start + begin : self._data_start + end]
    return raw.view(DTYPES[info["dtype"]]).reshape(info["shape"])


class SafetensorsCheckpoint:
  """All tensors of an HF model directory (single file or sharded with an index)."""

  def __init__(self, directory: str):
    index_path = os.path.join(directory, INDEX_FILE)
    single_path = os.path.join(directory, SINGLE_FILE)
    if os.path.exists(index_path):
      with open(index_path) as f:
        try:
          weight_map = json.load(f)["weight_map"]
        except (json.JSONDecodeError, KeyError) as e:
          raise CheckpointFormatError(
              f"{index_path}: bad index file, field 'weight_map' ({e})"
          ) from e
      files = {
          fname: SafetensorsFile(os.path.join(directory, fname))
          for fname in sorted(set(weight_map.values()))
      }
      self._where = {name: files[fname] for name, fname in weight_map.items()}
      for sf in files.values():
        for name in sf.keys():
          self._where.setdefault(name, sf)
    elif os.path.exists(single_path):
      sf = SafetensorsFile(single_path)
      self._where = {name: sf for name in sf.keys()}
    else:
      raise CheckpointFormatError(f"{directory}: no weight file ({SINGLE_FILE} or {INDEX_FILE})")
    self.directory = directory

  def __contains__(self, name: str) -> bool:
    return name in self._where

  def keys(self) -> list[str]:
    return list(self._where)

  def file_of(self, name: str) -> str:
    return self._where[name].path

  def shape(self, name: str) -> tuple[int, ...]:
    return self._where[name].shape(name)

  def get(self, name: str) -> np.ndarray:
    if name not in self._where:
      raise CheckpointFormatError(f"{self.directory}: tensor {name!r} not found in the weights")
    return self._where[name].get(name)


def write_safetensors(
    path: str, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None
) -> None:
  """Writes one safetensors file (tensors in the given order, 8-byte aligned header)."""
  header, offset = {}, 0
  arrays = {}
  for name, arr in tensors.items():
    arr = np.ascontiguousarray(arr)
    if arr.dtype not in _NAMES:
      raise ValueError(f"{path}: tensor {name!r} has dtype {arr.dtype} with no safetensors name")
    arrays[name] = arr
    header[name] = {
        "dtype": _NAMES[arr.dtype],
        "shape": list(arr.shape),
        "data_offsets": [offset, offset + arr.nbytes],
    }
    offset += arr.nbytes
  if metadata:
    header["__metadata__"] = dict(metadata)
  blob = json.dumps(header, separators=(",", ":")).encode()
  blob += b" " * (-len(blob) % 8)
  tmp = path + ".tmp"
  with open(tmp, "wb") as f:
    f.write(struct.pack("<Q", len(blob)))
    f.write(blob)
    for arr in arrays.values():
      f.write(arr.tobytes())
  os.replace(tmp, path)


def write_sharded_safetensors(
    directory: str, tensors: Iterable[tuple[str, np.ndarray]], max_shard_bytes: int = 5 * 2**30
) -> list[str]:
  """Writes `model-0000k-of-0000n.safetensors` shards plus the HF index; returns file names.

  `tensors` may be a generator, so callers can gather one parameter at a time from devices.
  A single shard is written as plain `model.safetensors` (what `save_pretrained` does).
  """
  os.makedirs(directory, exist_ok=True)
  shards, current, current_bytes = [], {}, 0
  for name, arr in tensors:
    if current and current_bytes + arr.nbytes > max_shard_bytes:
      shards.append(_flush_shard(directory, len(shards), current))
      current, current_bytes = {}, 0
    current[name] = arr
    current_bytes += arr.nbytes
  if current or not shards:
    shards.append(_flush_shard(directory, len(shards), current))
  if len(shards) == 1:
    tmp_name, names = shards[0]
    os.replace(os.path.join(directory, tmp_name), os.path.join(directory, SINGLE_FILE))
    return [SINGLE_FILE]
  n = len(shards)
  weight_map, total = {}, 0
  files = []
  for i, (tmp_name, names) in enumerate(shards):
    fname = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
    os.replace(os.path.join(directory, tmp_name), os.path.join(directory, fname))
    files.append(fname)
    for name, nbytes in names:
      weight_map[name] = fname
      total += nbytes
  with open(os.path.join(directory, INDEX_FILE), "w") as f:
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
  return files


def _flush_shard(directory, i, tensors):
  tmp_name = f".shard-{i:05d}.safetensors"
  write_safetensors(os.path.join(directory, tmp_name), tensors, metadata={"format": "pt"})
  return tmp_name, [(k, v.nbytes) for k, v in tensors.items()]
