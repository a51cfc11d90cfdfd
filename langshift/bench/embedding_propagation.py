"""Wall-clock of LEP embedding propagation at Llama-3-8B scale (Tikhomirov & Chernyshev 2024,
arXiv:2412.21140; issue 5 item 6).

  python -m langshift.bench.embedding_propagation [--product_dtype float32] [--dim 4096]

A 128,256-token base/instruct vocabulary extended by 46k tokens (LEP's Llama-3 "Extended"
size), d_model 4096, one matrix (an untied model has two: double the time). Weights are stored
as bf16 like the released checkpoints; the fit accumulates and solves in float64.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

from langshift.embeddings import propagation
from langshift.embeddings.vocabulary_map import vocabulary_map_from_decompositions


def synthetic_vocabulary_map(old_vocab: int, new_tokens: int, seed: int = 0):
  """Every old token kept at its id, each new token the mean of 2-4 random old tokens."""
  rng = np.random.default_rng(seed)
  decompositions = [[i] for i in range(old_vocab)]
  lengths = rng.integers(2, 5, new_tokens)
  decompositions += [list(rng.integers(0, old_vocab, n)) for n in lengths]
  return vocabulary_map_from_decompositions(decompositions, old_vocab)


def _random(rows: int, dim: int, rng, dtype) -> np.ndarray:
  out = np.empty((rows, dim), dtype)
  for start in range(0, rows, 16384):  # in slices: a float64 copy of it all would not fit
    stop = min(rows, start + 16384)
    out[start:stop] = (rng.standard_normal((stop - start, dim), np.float32) * 0.02).astype(dtype)
  return out


def gemm_rate(dtype, size: int = 4096, repeats: int = 3) -> float:
  """FLOP/s of numpy's BLAS GEMM (what the propagation runs on), best of `repeats`."""
  rng = np.random.default_rng(0)
  a, b = (rng.standard_normal((size, size)).astype(dtype) for _ in range(2))
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    a @ b
    best = min(best, time.perf_counter() - t0)
  return 2 * size**3 / best


def bf16_dot_rate(dim: int, rows: int = 8192, repeats: int = 3) -> float:
  """FLOP/s of XLA's bf16 x bf16 -> fp32 dot at the propagation's chunk shape (best of
  `repeats`): the rate bf16-exact products could run at on this machine."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((rows, dim), np.float32), jnp.bfloat16)
  y = jnp.asarray(rng.standard_normal((dim, dim), np.float32), jnp.bfloat16)
  dot = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
  dot(x, y).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    dot(x, y).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  return 2 * rows * dim**2 / best


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--old_vocab", type=int, default=128_256)
  parser.add_argument("--new_tokens", type=int, default=46_000)
  parser.add_argument("--dim", type=int, default=4096)
  parser.add_argument("--method", default="conversion", choices=("overlap", "conversion"))
  parser.add_argument("--product_dtype", default="float64", choices=("float64", "float32"))
  parser.add_argument("--chunk_rows", type=int, default=8192)
  args = parser.parse_args(argv)
  product_dtype = np.dtype(args.product_dtype)
  storage = ml_dtypes.bfloat16
  rng = np.random.default_rng(0)

  t0 = time.perf_counter()
  vocab_map = synthetic_vocabulary_map(args.old_vocab, args.new_tokens)
  t_map = time.perf_counter() - t0
  base = _random(args.old_vocab, args.dim, rng, storage)
  instruct = _random(args.old_vocab, args.dim, rng, storage)
  donor = _random(vocab_map.new_size, args.dim, rng, storage)

  t0 = time.perf_counter()
  transform = propagation.fit_propagation_map(
      base,
      instruct,
      vocab_map,
      args.method,
      solver="normal",
      chunk_rows=args.chunk_rows,
      product_dtype=product_dtype,
  )
  t_fit = time.perf_counter() - t0
  t0 = time.perf_counter()
  propagation.apply_propagation_map(
      donor, transform, chunk_rows=args.chunk_rows, product_dtype=product_dtype
  )
  t_apply = time.perf_counter() - t0

  rows = propagation.system_operator(vocab_map, args.method).shape[0]
  flops = rows * args.dim**2 * 3 + 2 * vocab_map.new_size * args.dim**2
  total = t_fit + t_apply
  print(
      f"vocabulary {args.old_vocab:,} -> {vocab_map.new_size:,} tokens, d={args.dim}, "
      f"method={args.method}, products in {args.product_dtype}, solve in float64"
  )
  print(f"  averaging operator (synthetic): {t_map:7.2f} s")
  print(f"  fit P ({rows:,} rows: Gram + cross + Cholesky): {t_fit:7.2f} s")
  print(f"  apply donor @ P ({vocab_map.new_size:,} rows):   {t_apply:7.2f} s")
  print(
      f"  propagation, one matrix:         {total:7.2f} s "
      f"({flops / total / 1e9:.0f} GFLOP/s over {flops / 1e12:.1f} TFLOP)"
  )
  rate = gemm_rate(product_dtype)
  print(
      f"  numpy {args.product_dtype} GEMM peak here: {rate / 1e9:.0f} GFLOP/s, so no "
      f"implementation of these products beats {flops / rate:.1f} s"
  )
  # The Gram and cross terms of kept (one-hot) rows multiply bf16 weights by bf16 weights,
  # which is exact in fp32: those could run on bf16 matmul units. Averaged rows and P are not
  # bf16 values, so the rest stays at the fp32 rate.
  exact_in_bf16 = 3 * int(vocab_map.kept.sum()) * args.dim**2
  bf16_rate = bf16_dot_rate(args.dim)
  floor = exact_in_bf16 / bf16_rate + (flops - exact_in_bf16) / rate
  print(
      f"  XLA bf16 x bf16 -> fp32 dot here: {bf16_rate / 1e9:.0f} GFLOP/s; with the "
      f"{exact_in_bf16 / 1e12:.1f} TFLOP of bf16 x bf16 products at that rate: >= {floor:.1f} s"
  )


if __name__ == "__main__":
  main()
