"""`train_and_evaluate(config, workdir)`: the one engine behind every recipe.

Recipes differ in data (config.data) and in which parameters train (config.train.trainable); the
loop is the same on a laptop CPU, a GPU, or a TPU pod slice.
"""

from __future__ import annotations

import math
import os
import signal
import time
from typing import Any, Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from langshift.checkpoints import hf_config
from langshift.checkpoints.hf_export import copy_tokenizer_files, export_hf_model
from langshift.checkpoints.hf_import import load_hf_params
from langshift.models.config import ModelConfig, model_config_from_dict
from langshift.models.llama import LlamaDecoder
from langshift.parallel import sharding as sharding_lib
from langshift.parallel.mesh import create_mesh
from langshift.train import checkpointing, flops, optimizer, state as state_lib, step as step_lib
from langshift.train.metrics import MetricsWriter

NUMERICS_KEYS = ("dtype", "param_dtype", "scan_layers", "remat_policy", "attention_impl")


class NonFiniteLossError(FloatingPointError):
  pass


def resolve_model_config(config) -> ModelConfig:
  """Architecture from init_from_hf's config.json when given, else from config.model."""
  if config.init_from_hf:
    numerics = {k: config.model[k] for k in NUMERICS_KEYS}
    return hf_config.model_config_from_hf(
        hf_config.read_hf_config(config.init_from_hf),
        source=os.path.join(config.init_from_hf, "config.json"), **numerics)
  return model_config_from_dict(config.model.to_dict())


def _load_tokenizer(config):
  path = config.tokenizer or config.init_from_hf
  if not path:
    return None
  from langshift.tokenization.tokenizer import load_tokenizer
  return load_tokenizer(path)


class _Preemption:
  """SIGTERM sets a flag; the loop saves a checkpoint and exits cleanly at the next step.

  Single process only. In a multi-host job, jax.distributed's own notifier catches SIGTERM and
  `manager.reached_preemption(step)` stops every host at the same step (even when only one was
  signalled); a Python handler would replace that notifier, and hosts would stop at different
  steps and hang in the collective save.
  """

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    if jax.process_count() > 1:
      return self
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread (e.g. a notebook worker): no handler
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       train_iter: Iterator[dict[str, np.ndarray]] | None = None,
                       eval_batches: list[dict[str, np.ndarray]] | None = None) -> dict[str, Any]:
  """Runs (or resumes) training; returns a summary (final step, perplexities, export path).

  `train_iter` / `eval_batches` replace the configured data (tests, notebooks); a supplied
  iterator is checkpointed too if it has get_state/set_state.
  """
  os.makedirs(workdir, exist_ok=True)
  tc = config.train
  devices = jax.devices()[:config.mesh.num_devices or None]
  mesh = create_mesh(config.mesh.ici.to_dict(), config.mesh.dcn.to_dict(), devices)
  rules = sharding_lib.rules_from_config(config.logical_rules)
  model_cfg = resolve_model_config(config)
  model = LlamaDecoder(model_cfg)
  tokenizer = _load_tokenizer(config)
  if tokenizer is not None and tokenizer.vocab_size > model_cfg.vocab_size:
    raise ValueError(f"tokenizer {tokenizer.path} has {tokenizer.vocab_size} tokens but the model "
                     f"vocab_size is {model_cfg.vocab_size}")
  if tc.global_batch_size % tc.microbatches:
    raise ValueError(f"train.global_batch_size={tc.global_batch_size} is not divisible by "
                     f"train.microbatches={tc.microbatches}")

  opt_cfg = config.optimizer
  total_steps = opt_cfg.total_steps or tc.steps
  with opt_cfg.ignore_type():
    opt_cfg = ml_collections.ConfigDict(opt_cfg.to_dict())
    opt_cfg.total_steps = total_steps
  abstract_params = nn.unbox(jax.eval_shape(
      lambda r: model.init(r, jnp.ones((1, 1), jnp.int32))["params"], jax.random.PRNGKey(0)))
  tx, schedule = optimizer.make_optimizer(opt_cfg, abstract_params, tc.trainable)
  mask = optimizer.trainable_mask(abstract_params, tc.trainable)
  abstract_state, shardings = state_lib.state_shardings(model, tx, mesh, rules)
  batch_sharding = sharding_lib.batch_sharding(mesh)

  manager = checkpointing.make_manager(workdir, config.checkpoint.every_steps,
                                       config.checkpoint.keep, config.checkpoint.async_save)
  rng = jax.random.PRNGKey(config.seed)
  iterator_state = None
  if manager.latest_step() is not None:
    logging.info("Resuming from %s (step %d)", manager.directory, manager.latest_step())
    target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          abstract_state, shardings)
    state, iterator_state = checkpointing.restore(manager, target)
    init_source = f"checkpoint step {int(state.step)}"
  elif config.init_from_hf:
    params = load_hf_params(config.init_from_hf, model_cfg, mesh=mesh, rules=rules)
    state = state_lib.state_from_params(params, tx, rng, shardings)
    init_source = f"hf:{config.init_from_hf}"
  else:
    state = state_lib.init_train_state(model, tx, mesh, rules, rng, shardings)
    init_source = "random"

  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))
    tok_dir = config.tokenizer or config.init_from_hf
    if tok_dir:
      os.makedirs(os.path.join(workdir, "tokenizer"), exist_ok=True)
      copy_tokenizer_files(tok_dir, os.path.join(workdir, "tokenizer"))

  if train_iter is None:
    from langshift.data.pipeline import make_train_iterator
    train_iter = make_train_iterator(
        config.data, tokenizer, seq_len=tc.seq_len, global_batch_size=tc.global_batch_size,
        seed=config.seed, process_index=jax.process_index(), process_count=jax.process_count())
  if iterator_state is not None and hasattr(train_iter, "set_state"):
    train_iter.set_state(iterator_state)
  if eval_batches is None and len(config.eval_data.sources):
    from langshift.data.pipeline import make_eval_batches
    eval_batches = make_eval_batches(
        config.eval_data, tokenizer, seq_len=tc.seq_len, global_batch_size=tc.global_batch_size,
        process_index=jax.process_index(), process_count=jax.process_count(),
        max_batches=tc.eval_batches)

  train_step = jax.jit(
      step_lib.make_train_step(model, tx, schedule, mask, microbatches=tc.microbatches,
                               z_loss=tc.z_loss, loss_chunk_size=tc.loss_chunk_size),
      in_shardings=(shardings, batch_sharding), out_shardings=(shardings, None),
      donate_argnums=(0,))
  eval_step = jax.jit(step_lib.make_eval_step(model, tc.loss_chunk_size),
                      in_shardings=(shardings.params, batch_sharding))

  def to_global(batch):
    batch = {k: batch[k] for k in step_lib.BATCH_KEYS}
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(batch_sharding, x),
                        batch)

  def perplexity(params):
    if not eval_batches:
      return None
    total, weight = 0.0, 0.0
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
      for b in eval_batches:
        s, w = eval_step(params, to_global(b))
        total, weight = total + float(s), weight + float(w)
    return math.exp(total / max(weight, 1.0))

  def benchmark(params, step_now):
    """Training-time benchmark suite (Darumeru-style) on the current params."""
    es = config.eval_suite
    if not es.suite:
      return {}
    from langshift.evaluation.harness import run_eval_suite
    from langshift.generation.tokenizer_adapter import load_text_tokenizer
    results = run_eval_suite(es.suite, config=model_cfg, params=params,
                             tokenizer=load_text_tokenizer(config.tokenizer or config.init_from_hf),
                             chat=es.chat, max_examples=es.max_examples,
                             batch_size=es.batch_size, mesh=mesh, rules=rules)
    writer.write(step_now, results)
    return results

  writer = MetricsWriter(workdir, tc.steps)
  config_json = config.to_json_best_effort()
  flops_per_token = flops.train_flops_per_token(model_cfg, tc.seq_len)
  peak = flops.device_peak_flops(config.perf.peak_flops_per_device) * jax.device_count()
  start_step = int(state.step)
  summary: dict[str, Any] = {"init": init_source, "start_step": start_step}
  ppl_before = perplexity(state.params)
  if ppl_before is not None:
    summary["eval/perplexity_before"] = ppl_before
    writer.write(start_step, {"eval/perplexity": ppl_before})
  writer.message(f"langshift: {model_cfg.model_type} {state_lib.count_params(state.params)/1e6:.1f}M"
                 f" params from {init_source}; mesh {dict(mesh.shape)}; steps "
                 f"{start_step}->{tc.steps}" + (f"; held-out ppl {ppl_before:.3f}"
                                                 if ppl_before is not None else ""))

  def save(step, force=False):
    it_state = train_iter.get_state() if hasattr(train_iter, "get_state") else None
    return checkpointing.save(manager, step, state, it_state, config_json, force=force)

  tokens_seen = 0.0
  window_tokens, window_t0, window_steps = 0.0, time.perf_counter(), 0
  pending = None  # metrics of the previous step, read after the next step is dispatched
  step = start_step
  stop_reason = "completed"

  def process(step_done, metrics_dev, tokens):
    nonlocal window_tokens, window_t0, window_steps
    m = jax.device_get(metrics_dev)
    if bool(m["train/nonfinite"]):
      raise NonFiniteLossError(
          f"non-finite loss ({float(m['train/loss'])}) or gradient at step {step_done}; the update"
          " was skipped and the last good state is saved")
    window_tokens += tokens
    window_steps += 1
    if step_done % tc.log_every == 0 or step_done == tc.steps:
      dt = time.perf_counter() - window_t0
      out = {k: float(v) for k, v in m.items() if k != "train/nonfinite"}
      out["train/tokens_seen"] = tokens_seen
      out["perf/step_time_s"] = dt / max(window_steps, 1)
      out["perf/tokens_per_s"] = window_tokens / dt if dt > 0 else 0.0
      out["perf/mfu"] = out["perf/tokens_per_s"] * flops_per_token / peak if peak else 0.0
      writer.write(step_done, out)
      writer.progress(step_done, out)
      window_tokens, window_t0, window_steps = 0.0, time.perf_counter(), 0

  with _Preemption() as preempt, jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    try:
      while step < tc.steps:
        batch = next(train_iter)
        batch_tokens = float(np.sum(batch["segment_ids"] > 0)) * jax.process_count()
        state, metrics = train_step(state, to_global(batch))
        step += 1
        tokens_seen += batch_tokens
        if pending is not None:
          process(*pending)
        pending = (step, metrics, batch_tokens)
        save(step)
        if (config.eval_suite.every_steps and step % config.eval_suite.every_steps == 0
            and step < tc.steps):
          benchmark(state.params, step)
        if eval_batches and tc.eval_every and step % tc.eval_every == 0 and step < tc.steps:
          writer.write(step, {"eval/perplexity": perplexity(state.params)})
        if config.checkpoint.export_hf_every and step % config.checkpoint.export_hf_every == 0:
          _export(state.params, model_cfg, config, workdir, f"hf_step_{step}")
        if preempt.requested or manager.reached_preemption(step):
          stop_reason = "preempted"
          break
      if pending is not None:
        process(*pending)
    except NonFiniteLossError as e:
      stop_reason = "nonfinite"
      save(int(state.step), force=True)
      manager.wait_until_finished()
      writer.message(f"langshift: stopped: {e}")
      writer.close()
      raise
    except StopIteration:
      stop_reason = "data_exhausted"
  if manager.latest_step() != int(state.step):
    save(int(state.step), force=True)
  manager.wait_until_finished()
  summary.update(step=int(state.step), stop_reason=stop_reason, tokens_seen=tokens_seen)
  if stop_reason == "preempted":
    writer.message(f"langshift: preempted at step {int(state.step)}; checkpoint saved")
    writer.close()
    return summary
  ppl_after = perplexity(state.params)
  if ppl_after is not None:
    summary["eval/perplexity_after"] = ppl_after
    writer.write(int(state.step), {"eval/perplexity": ppl_after})
  summary.update(benchmark(state.params, int(state.step)))
  if config.checkpoint.export_hf_at_end:
    summary["hf_export"] = _export(state.params, model_cfg, config, workdir, "hf")
  line = f"langshift: done at step {int(state.step)} ({stop_reason})"
  if ppl_before is not None and ppl_after is not None:
    line += f"; held-out perplexity {ppl_before:.3f} -> {ppl_after:.3f}"
  if "hf_export" in summary:
    line += f"; HF export: {summary['hf_export']}"
  writer.message(line)
  writer.close()
  return summary


def _export(params, model_cfg, config, workdir, name):
  out = os.path.join(workdir, name)
  export_hf_model(params, model_cfg, out, tokenizer_dir=config.tokenizer or config.init_from_hf
                  or None, dtype=config.checkpoint.export_dtype)
  return out
