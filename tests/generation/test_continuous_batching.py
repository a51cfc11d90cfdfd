"""Continuous batching in `LocalGenerator`: a stream of requests through few rows, each finished
row refilled with the next request, gives every request the tokens it gets alone."""

import dataclasses

import hf_testing
import jax
import numpy as np
import pytest
import torch
from jax.sharding import Mesh
from tiny_llama_hf import tiny_hf_llama

from langshift.checkpoints.hf_import import load_hf_model
from langshift.generation.interface import GenerationOptions
from langshift.generation.local_backend import LocalGenerator
from langshift.generation.logits_processors import RepetitionPenalty, RuleBasedAdapter
from langshift.models.llama import abstract_params
from langshift.parallel import sharding

MAX_NEW = 14


def _prompts(n, seed, vocab):
  rng = np.random.default_rng(seed)
  return [rng.integers(3, vocab, size=int(rng.integers(1, 13))).tolist() for _ in range(n)]


def _hf_alone(model, prompt, stop, max_new=MAX_NEW):
  """transformers greedy continuation of one unpadded prompt, the stop token removed."""
  with torch.no_grad():
    out = model.generate(
        torch.tensor([prompt]),
        max_new_tokens=max_new,
        do_sample=False,
        num_beams=1,
        eos_token_id=stop,
        pad_token_id=0,
    )
  ids = out[0, len(prompt) :].tolist()
  return ids[: ids.index(stop)] if stop in ids else ids


def _stop_for_mixed_lengths(model, prompts):
  """A token the free-running model emits at different steps in different prompts, so that with
  it as the stop token the answers end at mixed lengths (the stream refills rows)."""
  free = [_hf_alone(model, p, stop=None) for p in prompts]
  best, best_spread = None, 0
  for token in {t for row in free for t in row}:
    ends = {row.index(token) if token in row else MAX_NEW for row in free}
    if len(ends) > best_spread:
      best, best_spread = token, len(ends)
  assert best_spread >= 3, "the random model gives no mixed-length stream"
  return best


@pytest.mark.parametrize("kind", ["llama31", "mistral", "qwen2", "tied"])
def test_stream_through_refilled_rows_equals_each_request_alone(kind, tmp_path):
  """Greedy fp32: 9 requests through 3 rows give each request transformers' tokens for that
  prompt alone (Mistral: sliding window 5, shorter than most rows; Qwen2: q/k/v biases)."""
  model = hf_testing.make_hf_model(kind, tmp_path)
  config, params = load_hf_model(str(tmp_path))
  prompts = _prompts(9, seed=1, vocab=config.vocab_size)
  stop = _stop_for_mixed_lengths(model, prompts)
  options = GenerationOptions(max_new_tokens=MAX_NEW)
  gen = LocalGenerator(config, params, None, batch_size=3, length_bucket=4, stop_token_ids=(stop,))
  outs = gen.generate_tokens(prompts, options)
  assert outs == [_hf_alone(model, p, stop) for p in prompts]
  assert len({len(o) for o in outs}) >= 3
  stream = gen.last_stats
  assert stream.requests == 9 and stream.generated_tokens == sum(
      len(o) + (len(o) < MAX_NEW) for o in outs
  )
  # The same requests in static batches of 3: same answers, more steps (finished rows idle).
  static = LocalGenerator(
      config,
      params,
      None,
      batch_size=3,
      length_bucket=4,
      stop_token_ids=(stop,),
      continuous_batching=False,
  )
  assert static.generate_tokens(prompts, options) == outs
  # How many starts meet busy rows depends on where the random model stops (>= 1 in every kind).
  assert stream.refills >= 1 and static.last_stats.refills == 0
  assert stream.decode_steps <= static.last_stats.decode_steps


def test_refills_waiting_for_a_share_of_free_rows_keep_the_answers(tmp_path):
  """`refill_fraction`: a decode call returns only once half the rows are free, so refills
  come in fewer, larger prefill groups; every answer is still the request's answer alone."""
  model = hf_testing.make_hf_model("llama31", tmp_path)
  config, params = load_hf_model(str(tmp_path))
  prompts = _prompts(12, seed=9, vocab=config.vocab_size)
  stop = _stop_for_mixed_lengths(model, prompts)
  options = GenerationOptions(max_new_tokens=MAX_NEW)

  def run(fraction):
    gen = LocalGenerator(
        config,
        params,
        None,
        batch_size=4,
        length_bucket=4,
        stop_token_ids=(stop,),
        refill_fraction=fraction,
    )
    return gen.generate_tokens(prompts, options), gen.last_stats

  eager, eager_stats = run(0.0)
  grouped, grouped_stats = run(0.5)
  assert eager == grouped == [_hf_alone(model, p, stop) for p in prompts]
  assert grouped_stats.refills >= 2
  # One refill per finished row (eager) against a refill per two or more finished rows.
  assert grouped_stats.decode_calls < eager_stats.decode_calls
  assert grouped_stats.prefill_calls < eager_stats.prefill_calls
  with pytest.raises(ValueError, match="refill_fraction=1.5"):
    LocalGenerator(config, params, None, batch_size=4, refill_fraction=1.5)


def test_processors_see_each_request_from_its_own_start_in_a_refilled_row():
  """The seen-token mask and the response step restart when a row takes a new request: the
  stream equals each request decoded alone, and the penalties hold within each answer only."""
  _, config, params = tiny_hf_llama(seed=0)
  prompts = _prompts(7, seed=2, vocab=config.vocab_size)
  eos = 2
  processors = (
      RepetitionPenalty(1e6),
      RuleBasedAdapter(eos_token_ids=(eos,), eos_max=10.0, eos_ramp_length=8),
  )
  options = GenerationOptions(max_new_tokens=MAX_NEW)

  def generator(batch_size):
    return LocalGenerator(
        config,
        params,
        None,
        batch_size=batch_size,
        length_bucket=4,
        stop_token_ids=(eos,),
        processors=processors,
    )

  gen = generator(2)
  outs = gen.generate_tokens(prompts, options)
  assert outs == [generator(1).generate_tokens([p], options)[0] for p in prompts]
  for prompt, out in zip(prompts, outs):
    assert len(set(out)) == len(out) and not set(out) & set(prompt)
    assert len(out) < 9  # the EOS ramp (counted from this answer's start) ended it
  assert gen.last_stats.refills >= 3


def test_sampled_answers_do_not_depend_on_batch_neighbours():
  """Each request draws from its own key stream: the same answers with 1 or 3 rows, sorted or
  in request order; another seed gives other answers."""
  _, config, params = tiny_hf_llama(seed=0)
  prompts = _prompts(6, seed=3, vocab=config.vocab_size)
  options = GenerationOptions(max_new_tokens=8, temperature=1.0, top_k=20, seed=5)

  def run(batch_size, sort=True, options=options):
    gen = LocalGenerator(
        config, params, None, batch_size=batch_size, length_bucket=4, sort_by_length=sort
    )
    return gen.generate_tokens(prompts, options)

  alone = run(1)
  assert run(3) == alone and run(3, sort=False) == alone
  assert run(3, options=dataclasses.replace(options, seed=6)) != alone
  greedy = run(3, options=dataclasses.replace(options, temperature=0.0))
  assert alone != greedy


def test_stream_on_a_mesh_equals_single_device():
  """Rows data-parallel over 4 devices and the weights tensor-parallel over 2, as the
  native-alignment rewrite shards its decode batch; refills write into sharded rows."""
  model, config, params = tiny_hf_llama(seed=1, vocab_size=96)  # vocab divisible by tensor
  prompts = _prompts(13, seed=4, vocab=config.vocab_size)
  stop = _stop_for_mixed_lengths(model, prompts)
  options = GenerationOptions(max_new_tokens=MAX_NEW)
  single = LocalGenerator(config, params, None, batch_size=8, stop_token_ids=(stop,))
  want = single.generate_tokens(prompts, options)
  mesh = Mesh(np.asarray(jax.devices()[:8]).reshape(4, 1, 2), ("data", "fsdp", "tensor"))
  rules = sharding.DEFAULT_LOGICAL_RULES
  params_s = jax.device_put(
      params, sharding.logical_shardings(abstract_params(config), mesh, rules)
  )
  gen = LocalGenerator(
      config, params_s, None, batch_size=8, stop_token_ids=(stop,), mesh=mesh, rules=rules
  )
  assert gen.generate_tokens(prompts, options) == want
  assert gen.last_stats.refills >= 3 and len({len(o) for o in want}) >= 3


def test_empty_prompt_is_an_error_naming_the_request():
  _, config, params = tiny_hf_llama(seed=0)
  gen = LocalGenerator(config, params, None, batch_size=2, stop_token_ids=(2,))
  with pytest.raises(ValueError, match="request 1 has an empty prompt"):
    gen.generate_tokens([[5, 6], []], GenerationOptions(max_new_tokens=2))
