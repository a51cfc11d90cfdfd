"""Corpus perplexity scoring (`python -m langshift.score`): scores aligned with the source's
records and equal to a transformers forward pass, exactly-once resumption after a SIGKILL, and a
two-process job equal to one process."""

import json
import math
import os
import signal
import subprocess
import sys

import hf_testing
import multiprocess_testing
import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "data"))
import data_fixtures  # noqa: E402

from langshift import score  # noqa: E402
from langshift.generation.job import read_outputs  # noqa: E402

TEXTS = [
    "Привет, как дела?",
    "the cat sat on the mat",
    "",
    "книга на столе и ещё одна книга на полке",
    "a",
    "Сервер работает без остановки уже много дней подряд",
    "dogs and cats",
    "x y z",
    "последний документ",
    "one more line of English text to score",
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  directory = tmp_path_factory.mktemp("model")
  data_fixtures.write_bpe_tokenizer(directory)
  from tokenizers import Tokenizer

  vocab = Tokenizer.from_file(os.path.join(directory, "tokenizer.json")).get_vocab_size()
  hf_testing.make_hf_model("llama31", directory, vocab_size=vocab)
  return str(directory)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  path = tmp_path_factory.mktemp("corpus") / "c.jsonl"
  data_fixtures.write_jsonl(path, [{"text": t} for t in TEXTS])
  return str(path)


def _cli(model_dir, corpus, out, **flags):
  args = [sys.executable, "-m", "langshift.score", f"--model={model_dir}", f"--source={corpus}"]
  args += [f"--out={out}", "--shard_size=3", "--batch_size=2", "--max_length=64"]
  return args + [f"--{k}={v}" for k, v in flags.items()]


def _env(**extra):
  return {**os.environ, "PYTHONPATH": multiprocess_testing.REPO, **extra}


def _reference_perplexities(model_dir):
  """Each text's perplexity from an unpadded transformers forward over the tokens the scorer
  predicts (prefix token, then the text's ids)."""
  import transformers

  from langshift.evaluation.scoring import prefix_token_id, resolve_bos
  from langshift.tokenization.tokenizer import load_tokenizer

  tokenizer = load_tokenizer(model_dir)
  model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
  bos = resolve_bos(tokenizer, "auto")
  out = []
  for text in TEXTS:
    ids = list(tokenizer.encode(text))
    if bos and ids:
      ids = [tokenizer.bos_id, *ids]
    if not ids:
      out.append(math.inf)
      continue
    seq = [prefix_token_id(tokenizer), *ids]
    logits = torch.as_tensor(hf_testing.hf_logits(model, [seq[:-1]])[0])
    logp = torch.log_softmax(logits, -1)[torch.arange(len(ids)), torch.as_tensor(ids)]
    out.append(math.exp(-float(logp.sum()) / len(ids)))
  return np.asarray(out)


@pytest.fixture(scope="module")
def scored(model_dir, corpus, tmp_path_factory):
  """One uninterrupted one-process run: (its output folder, its printed summary)."""
  out = tmp_path_factory.mktemp("scored") / "scores"
  done = subprocess.run(
      _cli(model_dir, corpus, out), env=_env(), capture_output=True, text=True, timeout=300
  )
  assert done.returncode == 0, done.stderr[-3000:]
  return out, json.loads(done.stdout.strip().splitlines()[-1])


def test_scores_align_with_records_and_match_transformers(model_dir, corpus, scored):
  out, summary = scored
  assert summary["records"] == len(TEXTS) and summary["unscored"] == 1  # the empty text
  scores = np.load(out / "scores.npy")
  np.testing.assert_allclose(scores, _reference_perplexities(model_dir), rtol=1e-4)
  # The scores file feeds selection directly: the same count as the source's records.
  from langshift.data import selection

  assert len(selection.load_scores(str(out / "scores.npy"), len(TEXTS))) == len(TEXTS)
  # A rerun has nothing left to do and leaves the file as it was.
  again = subprocess.run(
      _cli(model_dir, corpus, out), env=_env(), capture_output=True, text=True, timeout=300
  )
  assert again.returncode == 0, again.stderr[-3000:]
  np.testing.assert_array_equal(np.load(out / "scores.npy"), scores)


def test_killed_job_resumes_scoring_every_record_exactly_once(model_dir, corpus, scored, tmp_path):
  whole, resumed = scored[0], tmp_path / "resumed"
  # SIGKILL once 5 records are durable: shard 0 whole, shard 1 two of three records in.
  killed = subprocess.run(
      _cli(model_dir, corpus, resumed),
      env=_env(LANGSHIFT_FAULT=f"kill@{score.FAULT_COUNTER}=5"),
      timeout=300,
  )
  assert killed.returncode == -signal.SIGKILL
  assert not (resumed / "scores.npy").exists()
  with open(resumed / "outputs" / "part-00001.jsonl.inprogress") as f:
    assert len(f.readlines()) == 2
  assert subprocess.run(_cli(model_dir, corpus, resumed), env=_env(), timeout=300).returncode == 0
  ids = [r["id"] for r in read_outputs(str(resumed / "outputs"))]
  assert ids == list(range(len(TEXTS)))  # every record once, in order
  np.testing.assert_array_equal(np.load(resumed / "scores.npy"), np.load(whole / "scores.npy"))


def test_two_processes_split_the_shards_and_equal_one_process(model_dir, corpus, scored, tmp_path):
  single, double = scored[0], tmp_path / "double"
  results = multiprocess_testing.run(
      _cli(model_dir, corpus, double), num_processes=2, devices_per_process=1, timeout=300
  )
  for rc, out, err in results:
    assert rc == 0, out[-2000:] + err[-3000:]
  assert json.loads(results[0][1].strip().splitlines()[-1])["records"] == len(TEXTS)
  assert '"records"' not in results[1][1]  # only process 0 writes the scores and the summary
  np.testing.assert_allclose(
      np.load(double / "scores.npy"), np.load(single / "scores.npy"), rtol=1e-5
  )
  # Shards of 3 records taken round-robin: process 0 scores shards 0 and 2, process 1 shards 1, 3.
  assert "(worker 0 of 2): wrote 6 records" in results[0][2]
  assert "(worker 1 of 2): wrote 4 records" in results[1][2]


def test_a_changed_source_is_a_one_line_error(model_dir, scored, tmp_path):
  out = scored[0]
  shorter = tmp_path / "shorter.jsonl"
  data_fixtures.write_jsonl(shorter, [{"text": t} for t in TEXTS[:4]])
  done = subprocess.run(
      _cli(model_dir, shorter, out), env=_env(), capture_output=True, text=True, timeout=300
  )
  assert done.returncode != 0
  assert "holds 10 records but source corpus has 4: the source changed" in done.stderr
