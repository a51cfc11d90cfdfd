"""Test-wide setup: 8 simulated CPU devices (must be set before jax is imported anywhere)."""

import os
import sys

os.environ.setdefault("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
  os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Parity tests compare fp32 numbers at 1e-4: make matmuls full precision on every backend.
os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# One persistent XLA compilation cache for the whole run, shared by both xdist workers and every
# process the tests start (`python -m langshift.main`, two-host runs, notebooks' kernels): the same
# tiny models compile once, not once per process (the CLI's 6-step demo run took 144 s cold and 67 s
# with the cache warm). Keys cover the HLO, the compile options and the jax/XLA versions, so a hit
# is the executable a fresh compile would give; an unreadable entry is a warning and a recompile.
_TESTS = os.path.dirname(os.path.abspath(__file__))
_CACHE = os.path.join(os.path.dirname(_TESTS), ".cache", "jax_tests")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(4 << 30))  # LRU-evicted beyond 4 GiB

# Shared test helpers (tests/hf_testing.py) importable from every test folder.
sys.path.insert(0, _TESTS)
