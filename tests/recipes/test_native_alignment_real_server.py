"""The native-alignment seed stage driven through a real OpenAI-compatible server: llama.cpp
(llama-cpp-python) serving the SmolLM2-135M-Instruct GGUF as the expert, the rest of the recipe on
tiny models. Runs when `launch/llama_server.sh install` has built .venv-llama/ (CI does not build
it; the fake server of test_native_alignment.py covers the same path there)."""

import json
import os
import subprocess
import sys

import pytest

from langshift.recipes import native_alignment as na_lib
from langshift.recipes.recipe import run_recipe

TESTS = os.path.join(os.path.dirname(__file__), "..")
sys.path.insert(0, os.path.join(TESTS, "generation"))
from fake_openai_server import free_port  # noqa: E402
from test_native_alignment import _config, _marker, _read, inputs  # noqa: E402,F401

REPO = os.path.abspath(os.path.join(TESTS, ".."))
SCRIPT = os.path.join(REPO, "launch", "llama_server.sh")
BUILT = os.path.exists(os.path.join(REPO, ".venv-llama", "bin", "python"))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not BUILT, reason="no llama.cpp server: run launch/llama_server.sh install"),
]


@pytest.fixture(scope="module")
def server_url():
  port = free_port()
  out = subprocess.run(
      [SCRIPT, "start", f"--port={port}"], check=True, capture_output=True, text=True
  )
  yield out.stdout.strip().splitlines()[-1]
  subprocess.run([SCRIPT, "stop", f"--port={port}"], check=True, capture_output=True)


def test_seed_stage_rewrites_through_llama_cpp_exactly_once(inputs, server_url, tmp_path):  # noqa: F811
  work = str(tmp_path / "work")
  config = _config(
      inputs,
      server_url,
      **{
          "native_align.expert.model": "smollm2",
          "native_align.expert.max_new_tokens": 32,
          "native_align.expert.timeout_s": 300.0,
      },
  )
  result = run_recipe(na_lib.RECIPE, config, work, log=lambda _: None)
  assert result["status"] == "done"
  seed = _marker(work, "seed")
  outputs = _read(os.path.join(work, "seed_rewrite", "rewrites.jsonl"))
  requests = _read(os.path.join(work, "seed_rewrite", "requests.jsonl"))
  assert sorted(o["id"] for o in outputs) == sorted(r["id"] for r in requests)
  assert seed["rewriter"] == f"smollm2@{server_url}"
  assert seed["seed_generated_tokens"] > 0 and seed["seed_tokens_per_s"] > 0
  with open(os.path.join(work, "seed_rewrite", "outputs", "part-00000.jsonl")) as f:
    assert json.loads(f.readline())["generator"] == f"smollm2@{server_url}"
