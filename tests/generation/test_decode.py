import jax
import numpy as np
import pytest
import torch
from jax.sharding import Mesh
from tiny_llama_hf import tiny_hf_llama

from langshift.generation.decode import generate, make_generate_fn
from langshift.generation.logits_processors import RepetitionPenalty, RuleBasedAdapter
from langshift.generation.sampling import SamplingParams
from langshift.models.llama import abstract_params
from langshift.parallel import sharding

MAX_NEW = 12


@pytest.fixture(scope="module")
def tiny():
  return tiny_hf_llama(seed=0)


def _left_pad(prompts, pad_id=0):
  t = max(len(p) for p in prompts)
  tokens = np.full((len(prompts), t), pad_id, np.int32)
  segs = np.zeros((len(prompts), t), np.int32)
  for i, p in enumerate(prompts):
    tokens[i, t - len(p) :] = p
    segs[i, t - len(p) :] = 1
  return tokens, segs


def _hf_greedy(model, prompts, eos, max_new=MAX_NEW):
  tokens, segs = _left_pad(prompts)
  with torch.no_grad():
    out = model.generate(
        torch.tensor(tokens, dtype=torch.long),
        attention_mask=torch.tensor(segs, dtype=torch.long),
        max_new_tokens=max_new,
        do_sample=False,
        eos_token_id=eos,
        pad_token_id=0,
        num_beams=1,
    )
  return out[:, tokens.shape[1] :].numpy()


PROMPTS = [[5, 17, 33, 8, 61, 12], [40, 9], [71, 3, 22, 90]]


def test_greedy_matches_transformers_generate_with_left_padding(tiny):
  model, config, params = tiny
  tokens, segs = _left_pad(PROMPTS)
  fn = make_generate_fn(config, MAX_NEW)  # no stop token: compare all 12 tokens
  out = fn(params, tokens, segs, jax.random.key(0))
  ref = _hf_greedy(model, PROMPTS, eos=None)
  np.testing.assert_array_equal(np.asarray(out.tokens), ref)
  assert np.asarray(out.lengths).tolist() == [MAX_NEW] * 3
  # The most padded row alone (no padding) continues as it does in the batch.
  single = fn(
      params, np.asarray([PROMPTS[1]], np.int32), np.ones((1, 2), np.int32), jax.random.key(0)
  )
  np.testing.assert_array_equal(np.asarray(single.tokens)[0], ref[1])


def test_stops_on_end_of_turn_token_like_transformers(tiny):
  model, config, params = tiny
  free = _hf_greedy(model, PROMPTS, eos=None)
  eos = int(free[0, 3])  # row 0 emits this token at step 3: it must stop there.
  tokens, segs = _left_pad(PROMPTS)
  out = make_generate_fn(config, MAX_NEW, stop_token_ids=(eos,))(
      params, tokens, segs, jax.random.key(0)
  )
  ref = _hf_greedy(model, PROMPTS, eos=eos)
  lengths = np.asarray(out.lengths)
  assert lengths[0] == 4 and bool(out.stopped[0])
  for i in range(3):
    got = np.asarray(out.tokens)[i, : lengths[i]]
    np.testing.assert_array_equal(got, ref[i, : lengths[i]])
    assert (np.asarray(out.tokens)[i, lengths[i] :] == 0).all()


def test_sampling_is_seeded_and_top_k_one_is_greedy(tiny):
  _, config, params = tiny
  tokens, segs = _left_pad(PROMPTS)
  greedy = make_generate_fn(config, MAX_NEW)(params, tokens, segs, jax.random.key(0))
  top1 = make_generate_fn(config, MAX_NEW, SamplingParams(temperature=0.7, top_k=1))(
      params, tokens, segs, jax.random.key(3)
  )
  np.testing.assert_array_equal(np.asarray(top1.tokens), np.asarray(greedy.tokens))
  hot = make_generate_fn(config, MAX_NEW, SamplingParams(temperature=5.0, top_p=0.95))
  a = np.asarray(hot(params, tokens, segs, jax.random.key(1)).tokens)
  b = np.asarray(hot(params, tokens, segs, jax.random.key(1)).tokens)
  c = np.asarray(hot(params, tokens, segs, jax.random.key(2)).tokens)
  np.testing.assert_array_equal(a, b)
  assert (a != c).any() and (a != np.asarray(greedy.tokens)).any()


def test_repetition_penalty_changes_greedy_path_away_from_repeats(tiny):
  _, config, params = tiny
  tokens, segs = _left_pad(PROMPTS)
  plain = np.asarray(make_generate_fn(config, 24)(params, tokens, segs, jax.random.key(0)).tokens)
  strong = make_generate_fn(config, 24, processors=(RepetitionPenalty(1e6),))
  out = np.asarray(strong(params, tokens, segs, jax.random.key(0)).tokens)
  assert any(len(set(r)) < len(r) for r in plain)  # the random model does repeat itself
  for prompt, row in zip(PROMPTS, out):  # a huge penalty forbids any token seen so far
    assert len(set(row)) == len(row) and not set(row) & set(prompt)


def test_data_parallel_generation_on_a_mesh_equals_single_device():
  _, config, params = tiny_hf_llama(seed=1, vocab_size=96)  # vocab divisible by the tensor axis
  prompts = PROMPTS * 3 + [[7, 7, 7], [11], [60, 61, 62, 63, 64, 65, 66], [2, 4, 6, 8, 10]]
  prompts = prompts[:8]
  tokens, segs = _left_pad(prompts)
  ref = jax.jit(lambda p, t, s, k: generate(p, t, s, k, config=config, max_new_tokens=6))(
      params, tokens, segs, jax.random.key(0)
  )
  mesh = Mesh(np.asarray(jax.devices()[:8]).reshape(4, 1, 2), ("data", "fsdp", "tensor"))
  rules = sharding.DEFAULT_LOGICAL_RULES
  params_s = jax.device_put(
      params, sharding.logical_shardings(abstract_params(config), mesh, rules)
  )
  tokens_s = jax.device_put(tokens, sharding.batch_sharding(mesh))
  segs_s = jax.device_put(segs, sharding.batch_sharding(mesh))
  fn = make_generate_fn(config, 6, mesh=mesh, rules=rules)
  out = fn(params_s, tokens_s, segs_s, jax.random.key(0))
  np.testing.assert_array_equal(np.asarray(out.tokens), np.asarray(ref.tokens))
  assert params_s["layers"]["mlp"]["up_proj"]["kernel"].sharding.spec[-1] == "tensor"


def test_rule_based_adapter_in_the_loop_ends_turns_by_the_eos_ramp(tiny):
  _, config, params = tiny
  tokens, segs = _left_pad(PROMPTS)
  eos = 2
  plain = make_generate_fn(config, 16, stop_token_ids=(eos,))(
      params, tokens, segs, jax.random.key(0)
  )
  assert not np.asarray(plain.stopped).any()  # the random model never ends on its own
  adapter = RuleBasedAdapter(eos_token_ids=(eos,), eos_max=60.0, eos_ramp_length=6)
  out = make_generate_fn(config, 16, stop_token_ids=(eos,), processors=(adapter,))(
      params, tokens, segs, jax.random.key(0)
  )
  assert np.asarray(out.stopped).all() and (np.asarray(out.lengths) <= 7).all()
