"""`python -m langshift.main` end to end: config file + overrides, real data pipeline, HF init,
resume after a stop with no batch skipped or repeated, HF export."""

import json
import os
import subprocess
import sys

import hf_testing
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "data"))
import data_fixtures  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp("cli")
  tok_dir = data_fixtures.write_bpe_tokenizer(root / "model")
  from tokenizers import Tokenizer

  vocab = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json")).get_vocab_size()
  hf_testing.make_hf_model(
      "llama31",
      root / "model",
      vocab_size=vocab,
      bos_token_id=None,
      eos_token_id=None,
      pad_token_id=None,
  )
  data_fixtures.write_jsonl(
      root / "train.jsonl", [{"text": f"{i}: {t}"} for i, t in enumerate(data_fixtures.CORPUS)]
  )
  data_fixtures.write_jsonl(root / "held.jsonl", [{"text": t} for t in data_fixtures.CORPUS[:5]])
  return root


def _main(root, workdir, *overrides, config="experiments/demo.py"):
  args = [
      sys.executable,
      "-m",
      "langshift.main",
      f"--config={config}",
      f"--workdir={workdir}",
      f"--config.init_from_hf={root / 'model'}",
      f"--config.data.sources.ru.path={root / 'train.jsonl'}",
      f"--config.evals.heldout.data.sources.ru.path={root / 'held.jsonl'}",
      "--config.train.seq_len=32",
      "--config.train.global_batch_size=8",
      "--config.optimizer.total_steps=6",
      "--config.optimizer.learning_rate=1e-3",
      "--config.checkpoint.every_steps=3",
      "--config.checkpoint.export_dtype=float32",
      *overrides,
  ]
  return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)


def _losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}


def test_main_runs_resumes_exactly_and_exports(setup, tmp_path):
  straight = _main(
      setup,
      tmp_path / "straight",
      "--config.train.steps=6",
      "--config.evals.suite.every_steps=3",
      "--config.evals.suite.max_examples=2",
      # One task of each kind (choice, generation, perplexity): the periodic suite's wiring in
      # main, not the whole suite (tests/evaluation/test_harness.py runs every task).
      "--config.evals.suite.tasks=language_id,copy_sentence_ru,ppl_handbook",
      "--config.checkpoint.export_hf_every=4",
      config="experiments/demo.py:suite=handbook_mini",
  )
  assert straight.returncode == 0, straight.stderr[-3000:]
  assert "held-out perplexity" in straight.stdout
  # The outcome as data (langshift/run_result.py): status, export and the final figures.
  with open(tmp_path / "straight" / "result.json") as f:
    result = json.load(f)
  assert (result["status"], result["recipe"]) == ("done", "cpt")
  assert result["export"] == str(tmp_path / "straight" / "hf")
  assert result["metrics"]["step"] == 6 and "eval/perplexity_after" in result["metrics"]
  # The whole process's peak: at least the training run's, whose phases reset the kernel's mark.
  assert result["peak_rss_gib"] >= result["metrics"]["peak_rss_gib"] > 0.1
  assert f"peak RSS {result['peak_rss_gib']:.2f} GiB" in straight.stdout
  first = _main(setup, tmp_path / "resumed", "--config.train.steps=3")
  assert first.returncode == 0, first.stderr[-3000:]
  second = _main(setup, tmp_path / "resumed", "--config.train.steps=6")
  assert second.returncode == 0, second.stderr[-3000:]
  assert "from checkpoint step 3" in second.stdout
  with open(tmp_path / "straight" / "metrics.jsonl") as f:
    suite_rows = [json.loads(line) for line in f if "eval/micro_avg" in line]
  assert [r["step"] for r in suite_rows] == [3, 6]  # every 3 steps and at the end
  assert "eval/copy_sentence_ru/length_ratio" in suite_rows[0]
  tasks_run = {k.split("/")[1] for k in suite_rows[0] if k.count("/") == 2} - {"settings"}
  assert tasks_run == {"language_id", "copy_sentence_ru", "ppl_handbook"}, tasks_run
  a, b = _losses(tmp_path / "straight"), _losses(tmp_path / "resumed")
  assert sorted(b) == list(range(1, 7))
  # Same batches in the same order after the restart: the data iterator state was restored.
  np.testing.assert_allclose([b[s] for s in range(1, 7)], [a[s] for s in range(1, 7)], rtol=1e-5)

  import torch
  import transformers

  export = tmp_path / "straight" / "hf"
  model, info = transformers.AutoModelForCausalLM.from_pretrained(
      str(export), output_loading_info=True, dtype=torch.float32
  )
  assert not info["missing_keys"] and not info["unexpected_keys"]
  tok = transformers.AutoTokenizer.from_pretrained(str(export))
  assert tok.chat_template == data_fixtures.LLAMA3_STYLE_TEMPLATE
  assert os.path.exists(tmp_path / "straight" / "tokenizer" / "tokenizer.json")
  # The periodic export (every 4 steps) is a complete HF directory too.
  assert os.path.exists(tmp_path / "straight" / "hf_step_4" / "model.safetensors")
  assert os.path.exists(tmp_path / "straight" / "hf_step_4" / "tokenizer.json")


def test_unknown_config_key_is_a_clear_error(setup, tmp_path):
  bad = _main(setup, tmp_path / "bad", "--config.train.stepz=3")
  assert bad.returncode != 0
  assert "stepz" in bad.stderr
  assert not os.path.exists(tmp_path / "bad" / "result.json")  # refused before the run began
