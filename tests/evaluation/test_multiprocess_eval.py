"""Generation and scoring with params sharded across two JAX processes (one 8-device mesh):
outputs spanning both hosts are gathered for every process and equal the one-process results."""

import json
import os
import sys

import hf_testing
import multiprocess_testing
import numpy as np

TESTS = os.path.join(os.path.dirname(__file__), "..")
sys.path.insert(0, os.path.join(TESTS, "data"))
import data_fixtures  # noqa: E402

WORKER = os.path.join(os.path.dirname(__file__), "multiprocess_eval_worker.py")


def test_two_process_generation_and_scoring_equal_one_process(tmp_path):
  model_dir = data_fixtures.write_bpe_tokenizer(tmp_path / "model")
  from tokenizers import Tokenizer

  vocab = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json")).get_vocab_size()
  hf_testing.make_hf_model("llama31", model_dir, vocab_size=vocab)
  results = multiprocess_testing.run([sys.executable, WORKER, str(model_dir)], timeout=600)
  outputs = []
  for rc, out, err in results:
    assert rc == 0, out[-2000:] + err[-4000:]
    outputs.append(json.loads(out.strip().splitlines()[-1]))
  assert all(o["distributed"] and o["processes"] == 2 and o["devices"] == 8 for o in outputs)
  assert outputs[0] == {**outputs[1]}  # every process holds the whole result

  single = multiprocess_testing.run(
      [sys.executable, WORKER, str(model_dir)], num_processes=1, devices_per_process=8, timeout=600
  )
  rc, out, err = single[0]
  assert rc == 0, err[-4000:]
  reference = json.loads(out.strip().splitlines()[-1])
  assert outputs[0]["generated"] == reference["generated"]
  assert all(len(ids) == 5 for ids in reference["generated"])
  np.testing.assert_allclose(outputs[0]["logprobs"], reference["logprobs"], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.array(outputs[0]["nll"]), np.array(reference["nll"]), rtol=1e-4)
