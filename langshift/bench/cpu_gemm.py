"""The matrix products of generation, XLA against PyTorch on this machine's CPU.

  python -m langshift.bench.cpu_gemm                       # SmolLM2-135M's shapes
  XLA_FLAGS=--xla_cpu_experimental_onednn_custom_call=true python -m langshift.bench.cpu_gemm

Generation on a CPU is two regimes. Prefill runs every prompt token through every weight matrix:
large products, bound by the GEMM kernel's FLOP rate. Decode runs one token per row: thin
products, bound by reading the weights and the KV cache from memory. This prints, for the
prefill and decode shapes of a model (hidden size, MLP size, vocabulary), the time and GFLOP/s of
`x @ w` in fp32 under XLA (what langshift runs) and under PyTorch (what transformers runs, with
its oneDNN/MKL kernels), each the median of `--repeats` calls after a warm-up. The ratio says how
much of a generation comparison is the kernels rather than the decoding engine
(docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def _median_seconds(fn, args, repeats: int) -> float:
  fn(*args)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn(*args)
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def shapes(hidden: int, mlp: int, vocab: int, prefill_tokens: int, decode_rows: int):
  """(name, m, k, n) of the products one layer (and the output projection) computes."""
  out = []
  for regime, m in (("prefill", prefill_tokens), ("decode", decode_rows)):
    out += [
        (f"{regime} q/o projection", m, hidden, hidden),
        (f"{regime} MLP up", m, hidden, mlp),
        (f"{regime} MLP down", m, mlp, hidden),
    ]
  out.append(("decode lm_head", decode_rows, hidden, vocab))
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--hidden", type=int, default=576)
  p.add_argument("--mlp", type=int, default=1536)
  p.add_argument("--vocab", type=int, default=49152)
  p.add_argument("--prefill_tokens", type=int, default=8 * 192, help="rows x padded prompt")
  p.add_argument("--decode_rows", type=int, default=32)
  p.add_argument("--repeats", type=int, default=20)
  p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="PyTorch threads")
  args = p.parse_args(argv)
  # pylint: disable=import-outside-toplevel
  import jax
  import jax.numpy as jnp
  import numpy as np
  import torch

  torch.set_num_threads(args.threads)
  print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; jax {jax.__version__} on")
  print(f"{jax.devices()[0].device_kind}; torch {torch.__version__} ({args.threads} threads)")
  print(f"{'product':<26} {'m x k x n':>20} {'XLA ms':>8} {'torch ms':>9} {'XLA GF/s':>9}")
  rng = np.random.default_rng(0)
  jitted = jax.jit(jnp.matmul)

  def xla_matmul(a, b):
    return jitted(a, b).block_until_ready()

  for name, m, k, n in shapes(
      args.hidden, args.mlp, args.vocab, args.prefill_tokens, args.decode_rows
  ):
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((k, n), dtype=np.float32)
    xj, wj = jnp.asarray(x), jnp.asarray(w)
    t_xla = _median_seconds(xla_matmul, (xj, wj), args.repeats)
    with torch.inference_mode():
      t_torch = _median_seconds(
          torch.matmul, (torch.from_numpy(x), torch.from_numpy(w)), args.repeats
      )
    gflops = 2 * m * k * n / t_xla / 1e9
    print(
        f"{name:<26} {f'{m} x {k} x {n}':>20} {t_xla * 1e3:8.2f} {t_torch * 1e3:9.2f} "
        f"{gflops:9.1f}   torch/XLA time {t_torch / t_xla:.2f}"
    )
  sys.stdout.flush()


if __name__ == "__main__":
  main()
