"""Smoke test of the LEP propagation benchmark at a toy size."""

import re

from langshift.bench import embedding_propagation


def test_benchmark_reports_the_phases_and_the_gemm_bound(capsys):
  embedding_propagation.main(
      [
          "--old_vocab=600",
          "--new_tokens=200",
          "--dim=64",
          "--product_dtype=float32",
          "--chunk_rows=128",
      ]
  )
  out = capsys.readouterr().out
  assert "600 -> 800 tokens, d=64" in out
  assert re.search(r"fit P \(800 rows.*: +\d+\.\d+ s", out)
  assert re.search(r"apply donor @ P \(800 rows\).* \d+\.\d+ s", out)
  assert re.search(r"GEMM peak here: \d+ GFLOP/s, so no implementation", out)
  # 600 kept rows x 3 products x 64^2 are exact in bf16.
  assert re.search(r"bf16 x bf16 -> fp32 dot here: \d+ GFLOP/s; with the 0.0 TFLOP .*>= \d", out)
