"""Local roles and the corpus scorer run on the experiment's `mesh.num_devices` of this process's
devices (0: all of them), with the same answers and scores either way."""

import os
import sys

import hf_testing
import jax
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "data"))
import data_fixtures  # noqa: E402

from langshift import score  # noqa: E402
from langshift.generation.interface import GenerationOptions  # noqa: E402
from langshift.recipes import roles  # noqa: E402

PROMPTS = ["the cat sat on", "a dog ran", "hello there friend", "one two"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  directory = data_fixtures.write_bpe_tokenizer(tmp_path_factory.mktemp("roles") / "model")
  from tokenizers import Tokenizer

  vocab = Tokenizer.from_file(os.path.join(directory, "tokenizer.json")).get_vocab_size()
  hf_testing.make_hf_model("llama31", directory, vocab_size=vocab)
  return str(directory)


def _param_devices(params) -> set:
  return {d for leaf in jax.tree.leaves(params) for d in leaf.sharding.device_set}


def test_local_role_on_the_first_n_devices_answers_as_on_all(model_dir):
  assert jax.local_device_count() == 8  # tests/conftest.py
  role = roles.role_config(backend="local", hf_dir=model_dir, dtype="float32", batch_size=3)
  options = GenerationOptions(max_new_tokens=6)
  every = roles.make_generator(role)
  one = roles.make_generator(role, num_devices=1)
  two = roles.make_generator(role, num_devices=2)
  assert every.mesh.devices.size == 8 and every.batch_size == 8  # rows padded to the devices
  assert one.mesh.devices.size == 1 and one.batch_size == 3
  assert two.mesh.devices.size == 2 and two.batch_size == 4
  assert _param_devices(one.params) == {jax.local_devices()[0]}
  assert _param_devices(two.params) == set(jax.local_devices()[:2])
  answers = every.complete(PROMPTS, options)
  assert one.complete(PROMPTS, options) == answers == two.complete(PROMPTS, options)
  assert all(answers)


def test_scorer_on_one_device_scores_as_on_all(model_dir):
  every = score.local_scorer(model_dir, max_length=16)
  one = score.local_scorer(model_dir, max_length=16, num_devices=1)
  assert _param_devices(every.params) == set(jax.local_devices())
  assert _param_devices(one.params) == {jax.local_devices()[0]}
  texts = [" ".join(PROMPTS * 3), PROMPTS[0]]  # the first spans two windows of 16
  np.testing.assert_allclose(
      np.array(one.token_nll(texts)), np.array(every.token_nll(texts)), rtol=1e-5
  )
