"""`python -m langshift.bench.host_memory` runs a variant and prints its phases and its peak
against the line (tiny model; no memory figure is asserted, only that each is reported)."""

import json
import os
import subprocess
import sys

import hf_testing

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "data"))
import data_fixtures  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def test_the_benchmark_reports_every_phase_and_the_peak_against_the_line(tmp_path):
  tok_dir = data_fixtures.write_bpe_tokenizer(tmp_path / "model")
  from tokenizers import Tokenizer  # pylint: disable=import-outside-toplevel

  vocab = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json")).get_vocab_size()
  hf_testing.make_hf_model(
      "llama31", tmp_path / "model", vocab_size=vocab, bos_token_id=None, eos_token_id=None
  )
  data_fixtures.write_jsonl(tmp_path / "text.jsonl", [{"text": t} for t in data_fixtures.CORPUS])
  out = tmp_path / "peaks.json"
  args = [
      sys.executable,
      "-m",
      "langshift.bench.host_memory",
      "--config=experiments/demo.py",
      f"--workdir={tmp_path / 'run'}",
      f"--out={out}",
      f"--config.init_from_hf={tmp_path / 'model'}",
      f"--config.data.sources.ru.path={tmp_path / 'text.jsonl'}",
      f"--config.evals.heldout.data.sources.ru.path={tmp_path / 'text.jsonl'}",
      "--config.evals.heldout.max_batches=1",
      "--config.train.seq_len=32",
      "--config.train.global_batch_size=4",
      "--config.train.steps=2",
      "--config.checkpoint.every_steps=2",
      "--config.mesh.num_devices=1",
  ]
  env = {**os.environ, "PYTHONPATH": REPO}
  done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "experiments/demo.py: peak RSS" in done.stdout and "the 10 GiB line" in done.stdout
  record = json.loads(out.read_text())
  phases = [p["phase"] for p in record["phases"]]
  for name in ("model load", "evaluation heldout", "compile", "checkpoint", "export", "whole run"):
    assert name in phases, phases
  assert record["peak_rss_gib"] == max(p["peak_rss_gib"] for p in record["phases"])
  # With one step after the first, "training" spans step 2; the run's peak is its whole run's.
  assert {"training run", "training"} <= set(phases)
  # A second run on the same workdir would measure nothing new: refused before it starts.
  again = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert again.returncode != 0 and "holds an earlier run" in again.stderr
