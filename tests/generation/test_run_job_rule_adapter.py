"""The generation CLI decodes through the rule-based adapter: its outputs are the in-process
generator's with the same adapter, and differ from plain decoding."""

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "recipes"))
import native_alignment_fixtures as fx  # noqa: E402

from langshift.checkpoints.hf_import import load_hf_model  # noqa: E402
from langshift.generation.interface import GenerationOptions  # noqa: E402
from langshift.generation.local_backend import LocalGenerator  # noqa: E402
from langshift.generation.logits_processors import rule_based_adapter  # noqa: E402
from langshift.tokenization.tokenizer import load_tokenizer  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def test_run_job_rule_adapter_matches_the_in_process_adapter(tmp_path):
  model = fx.write_chat_model(tmp_path / "model")
  prompts = ["the server package", "install the kernel", "what should we do"]
  records = [
      {"id": str(i), "messages": [{"role": "user", "content": p}]} for i, p in enumerate(prompts)
  ]
  fx.data_fixtures.write_jsonl(tmp_path / "in.jsonl", records)
  args = [
      sys.executable,
      "-m",
      "langshift.generation.run_job",
      f"--input={tmp_path / 'in.jsonl'}",
      f"--output_dir={tmp_path / 'out'}",
      f"--model_dir={model}",
      "--max_new_tokens=8",
      "--rule_adapter=no_eos",
  ]
  done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  with open(tmp_path / "out" / "part-00000.jsonl") as f:
    cli = [json.loads(line)["completion"] for line in f]
  config, params = load_hf_model(model)
  tokenizer = load_tokenizer(model)
  conversations = [r["messages"] for r in records]
  options = GenerationOptions(max_new_tokens=8)
  adapted = LocalGenerator(
      config, params, tokenizer, processors=(rule_based_adapter(tokenizer, "no_eos"),)
  ).chat(conversations, options)
  plain = LocalGenerator(config, params, tokenizer).chat(conversations, options)
  assert cli == adapted
  assert cli != plain
