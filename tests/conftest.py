"""Test-wide setup: 8 simulated CPU devices (must be set before jax is imported anywhere)."""

import os

os.environ.setdefault("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
  os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Parity tests compare fp32 numbers at 1e-4: make matmuls full precision on every backend.
os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import sys

# Shared test helpers (tests/hf_testing.py) importable from every test folder.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
