"""The one training engine behind every recipe: `setup(config, workdir)`, then `train_loop(run)`.

Recipes differ in data (config.data), in which parameters train (config.train.trainable) and in
what is evaluated (config.evals); the loop is the same on a laptop CPU, a GPU or a TPU pod slice.
`setup` resolves everything the run will need (mesh, model, tokenizer, data, state, jitted step,
evaluators), so a bad setting or a missing file fails before the first step; the loop then
reads like big_vision's `train.py`: step, log, checkpoint, and periodic actions by `every`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from absl import logging

from langshift import faults, memory, workdir_lock
from langshift.checkpoints import hf_config
from langshift.checkpoints.hf_export import copy_tokenizer_files, export_hf_model
from langshift.checkpoints.hf_import import load_hf_params
from langshift.checkpoints.peft_export import export_peft_adapter
from langshift.evaluation.evaluators import EvalContext, Evaluator, build_evaluators
from langshift.models import lora as lora_lib
from langshift.models.config import ModelConfig, model_config_from_dict
from langshift.models.llama import LlamaDecoder, abstract_params
from langshift.parallel import sharding as sharding_lib
from langshift.parallel.host_transfer import to_global
from langshift.parallel.mesh import create_mesh
from langshift.train import checkpointing, flops, optimizer, validation
from langshift.train import state as state_lib
from langshift.train import step as step_lib
from langshift.train.config import ARCHITECTURE_KEYS, NUMERICS_KEYS
from langshift.train.metrics import MetricsWriter
from langshift.train.preemption import Preemption
from langshift.train.progress import ProgressBar, Throughput


class NonFiniteLossError(FloatingPointError):
  pass


def every(step: int, n: int, total: int, *, last: bool = True) -> bool:
  """Whether a periodic action runs after `step`: every `n` steps (0: never), and at `total`
  when `last` (so `n = 0` with `last` means "at the end only")."""
  return (n > 0 and step % n == 0) or (last and step == total)


def resolve_model_config(config) -> ModelConfig:
  """The architecture of init_from_hf's config.json when given, else of `config.model`.

  With init_from_hf an architecture key set in `config.model` is an error: config.json decides
  the architecture and a silently ignored value would mislead.
  """
  given = {k: config.model[k] for k in ARCHITECTURE_KEYS if config.model[k] is not None}
  numerics = {k: config.model[k] for k in NUMERICS_KEYS}
  if config.init_from_hf:
    if given:
      key = sorted(given)[0]
      raise ValueError(
          f"config.model.{key}={given[key]!r} is set together with init_from_hf: "
          f"the architecture comes from {config.init_from_hf}/config.json; unset it"
      )
    return hf_config.model_config_from_hf(
        hf_config.read_hf_config(config.init_from_hf),
        source=os.path.join(config.init_from_hf, "config.json"),
        **numerics,
    )
  return model_config_from_dict({**given, **numerics})


@dataclasses.dataclass
class Run:
  """Everything a training run needs, resolved by `setup`."""

  config: ml_collections.ConfigDict
  workdir: str
  mesh: jax.sharding.Mesh
  rules: tuple
  model_config: ModelConfig
  tokenizer: Any  # langshift.tokenization.Tokenizer, or None (random init, synthetic data)
  tokenizer_dir: str  # where the tokenizer files come from ("" when there is none)
  state: state_lib.TrainState
  init_source: str  # "checkpoint step N" | "hf:<dir>" | "random"
  train_iter: Iterator[dict[str, np.ndarray]]
  train_step: Any  # jitted (state, batch) -> (state, metrics)
  batch_sharding: jax.sharding.Sharding
  evaluators: list[Evaluator]
  manager: Any  # orbax CheckpointManager
  writer: MetricsWriter
  flops_per_token: float
  peak_flops: float
  # The workdir's lock (process 0 holds the file), released when the loop ends.
  lock: workdir_lock.DirectoryLock = dataclasses.field(
      default_factory=lambda: workdir_lock.DirectoryLock(None)
  )
  # One line each: checkpoints set aside, a resume with a changed config (printed at the start).
  notes: list[str] = dataclasses.field(default_factory=list)


def setup(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    train_iter: Iterator[dict[str, np.ndarray]] | None = None,
    evaluators: list[Evaluator] | None = None,
) -> Run:
  """Resolves the run. Nothing in `workdir` is written before every input has been checked.

  Every setting is validated first (`validation.py`), then the workdir is locked (one writer:
  a second run on it fails naming the holder), temporary folders of killed saves are removed and
  the newest checkpoint that verifies is restored, its config compared with this one.

  `train_iter` replaces the configured data and `evaluators` the `config.evals` table (tests,
  notebooks); a supplied iterator is checkpointed too if it has get_state/set_state.
  """
  tc = config.train
  validation.check_config(config)
  devices = jax.devices()[: config.mesh.num_devices or None]
  mesh = create_mesh(config.mesh.ici.to_dict(), config.mesh.dcn.to_dict(), devices)
  validation.check_mesh(config, mesh)
  rules = sharding_lib.rules_from_config(config.logical_rules)
  model_cfg = resolve_model_config(config)
  validation.check_model(config, model_cfg)
  if tc.trainable == "lora":
    model_cfg = lora_lib.with_lora(model_cfg, tc.lora)
  if train_iter is None:
    validation.check_data_config(config)
  model = LlamaDecoder(model_cfg)
  tokenizer_dir = config.tokenizer or config.init_from_hf
  tokenizer = _load_tokenizer(tokenizer_dir, model_cfg, config.data.chat_template)

  opt_cfg = config.optimizer
  with opt_cfg.ignore_type():
    opt_cfg = ml_collections.ConfigDict(opt_cfg.to_dict())
    opt_cfg.total_steps = opt_cfg.total_steps or tc.steps  # documented default: train.steps
  shapes = nn.unbox(abstract_params(model_cfg))
  trainable = optimizer.trainable_spec(tc)
  tx, schedule = optimizer.make_optimizer(opt_cfg, shapes, trainable)
  abstract_state, shardings = state_lib.state_shardings(model, tx, mesh, rules)
  batch_sharding = sharding_lib.batch_sharding(mesh)

  if train_iter is None:
    from langshift.data.pipeline import make_train_iterator  # pylint: disable=import-outside-toplevel

    train_iter = make_train_iterator(
        config.data,
        tokenizer,
        seq_len=tc.seq_len,
        global_batch_size=tc.global_batch_size,
        seed=config.seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
  if evaluators is None:
    evaluators = build_evaluators(
        config.evals,
        EvalContext(
            model=model,
            model_config=model_cfg,
            tokenizer=tokenizer,
            mesh=mesh,
            rules=rules,
            param_shardings=shardings.params,
            batch_sharding=batch_sharding,
            seq_len=tc.seq_len,
            global_batch_size=tc.global_batch_size,
            loss_chunk_size=tc.loss_chunk_size,
            samples_dir=os.path.join(workdir, "eval_samples"),
        ),
    )

  lock = workdir_lock.acquire_for_job(workdir, purpose=f"training run (recipe {config.recipe})")
  manager = None
  try:
    manager = checkpointing.make_manager(
        workdir, config.checkpoint.every_steps, config.checkpoint.keep, config.checkpoint.async_save
    )
    checkpointing.remove_temporary(str(manager.directory))
    state, init_source, notes = _initial_state(
        config, manager, abstract_state, shardings, model, tx, model_cfg, mesh, rules, train_iter
    )
    _write_run_files(config, workdir, tokenizer_dir, run_chat_template(config, tokenizer))
    writer = MetricsWriter(workdir, resume_step=int(state.step))
  except BaseException:
    if manager is not None:
      checkpointing.finish_after_failure(manager)
    lock.release()
    raise

  train_step = jax.jit(
      step_lib.make_train_step(
          model,
          tx,
          schedule,
          optimizer.trainable_mask(shapes, trainable),
          microbatches=tc.microbatches,
          z_loss=tc.z_loss,
          loss_chunk_size=tc.loss_chunk_size,
      ),
      in_shardings=(shardings, batch_sharding),
      out_shardings=(shardings, None),
      donate_argnums=(0,),
  )
  peak = flops.device_peak_flops(config.perf.peak_flops_per_device) * jax.device_count()
  return Run(
      config=config,
      workdir=workdir,
      mesh=mesh,
      rules=rules,
      model_config=model_cfg,
      tokenizer=tokenizer,
      tokenizer_dir=tokenizer_dir,
      state=state,
      init_source=init_source,
      train_iter=train_iter,
      train_step=train_step,
      batch_sharding=batch_sharding,
      evaluators=evaluators,
      manager=manager,
      writer=writer,
      flops_per_token=flops.train_flops_per_token(model_cfg, tc.seq_len),
      peak_flops=peak,
      lock=lock,
      notes=notes,
  )


def _load_tokenizer(path: str, model_cfg: ModelConfig, chat_template: str):
  """The run's tokenizer; a `data.chat_template` other than "tokenizer" is its chat template,
  the one every evaluator and generator of the run renders conversations with."""
  if not path:
    return None
  # pylint: disable=import-outside-toplevel
  from langshift.tokenization.chat_templates import ChatTemplateError
  from langshift.tokenization.tokenizer import load_tokenizer

  try:
    tokenizer = load_tokenizer(path, chat_template=chat_template)
  except ChatTemplateError as e:
    raise ValueError(f"config.data.chat_template: {e}") from None
  if tokenizer.vocab_size > model_cfg.vocab_size:
    raise ValueError(
        f"tokenizer {tokenizer.path} has {tokenizer.vocab_size} tokens but the model "
        f"vocab_size is {model_cfg.vocab_size}"
    )
  return tokenizer


def _initial_state(
    config, manager, abstract_state, shardings, model, tx, model_cfg, mesh, rules, train_iter
):
  """(state, source, notes) by the documented precedence: checkpoint > init_from_hf > random.

  A checkpoint is the newest that verifies (`checkpointing.restore_latest_good`); `notes` are
  the one-line reports of newer ones set aside and of a resume with a changed config.
  """
  notes: list[str] = []
  if manager.latest_step() is not None:
    logging.info("Resuming from %s (step %d)", manager.directory, manager.latest_step())
    target = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_state, shardings
    )

    def check_config(where: str, stored: dict | None) -> None:
      changes = validation.resume_differences(stored, config) if stored else []
      if not changes:
        return
      shown = ", ".join(changes[:6]) + (f" and {len(changes) - 6} more" if len(changes) > 6 else "")
      if config.resume_policy != "new_config":
        raise ValueError(
            f"{where} was written with another config: {shown}; rerun with "
            "--config.resume_policy=new_config to continue it with the new values, or use a new "
            "workdir"
        )
      notes.append(
          f"langshift: resuming {where} with a changed config (resume_policy=new_config): {shown}"
      )

    restored = checkpointing.restore_latest_good(manager, target, check_config=check_config)
    notes[:0] = [f"langshift: {line}" for line in restored.set_aside]
    if not restored.verified:
      logging.warning(
          "%s has no checksums (written before they existed): restored unverified",
          checkpointing.step_dir(manager, restored.step),
      )
    if restored.iterator_state is not None and hasattr(train_iter, "set_state"):
      train_iter.set_state(restored.iterator_state)
    return restored.state, f"checkpoint step {int(restored.state.step)}", notes
  rng = jax.random.PRNGKey(config.seed)
  if config.init_from_hf:
    params = load_hf_params(config.init_from_hf, model_cfg, mesh=mesh, rules=rules)
    if model_cfg.lora is not None:  # fresh adapters on the loaded base weights
      adapters = lora_lib.init_adapters(model_cfg, jax.random.fold_in(rng, 1), shardings.params)
      params = lora_lib.add_adapters(params, adapters)
    state = state_lib.state_from_params(params, tx, rng, shardings)
    return state, f"hf:{config.init_from_hf}", notes
  return state_lib.init_train_state(model, tx, mesh, rules, rng, shardings), "random", notes


def run_chat_template(config, tokenizer) -> str | None:
  """The jinja template the run's `tokenizer/` and exports carry in place of the tokenizer
  directory's: the resolved `data.chat_template`, or None when that is "tokenizer"."""
  if tokenizer is None or config.data.chat_template in ("", "tokenizer"):
    return None
  return tokenizer.chat_template


def _write_run_files(config, workdir: str, tokenizer_dir: str, chat_template: str | None) -> None:
  """config.json and the tokenizer (with the run's chat template) beside the checkpoints
  (process 0)."""
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() != 0:
    return
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2))
  if tokenizer_dir:
    os.makedirs(os.path.join(workdir, "tokenizer"), exist_ok=True)
    copy_tokenizer_files(
        tokenizer_dir, os.path.join(workdir, "tokenizer"), chat_template=chat_template
    )


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    train_iter: Iterator[dict[str, np.ndarray]] | None = None,
    evaluators: list[Evaluator] | None = None,
) -> dict[str, Any]:
  """Runs (or resumes) training; returns a summary (final step, evaluations, export path, the
  run's peak RSS `peak_rss_gib`)."""
  with memory.phase("training run") as whole:
    with memory.phase("model load"):
      run = setup(config, workdir, train_iter=train_iter, evaluators=evaluators)
    summary = train_loop(run)
  return {**summary, "peak_rss_gib": round(whole.peak_gib, 3)}


def train_loop(run: Run) -> dict[str, Any]:
  """Trains `run` to `train.steps` (or a preemption, or the end of the data). On an error, the
  checkpoint being saved is finished (or its temporary folder removed) before the error
  propagates; the workdir lock is released either way."""
  try:
    return _loop(run)
  except BaseException:
    checkpointing.finish_after_failure(run.manager)
    run.writer.close()
    raise
  finally:
    run.lock.release()


def _loop(run: Run) -> dict[str, Any]:
  config, tc, writer = run.config, run.config.train, run.writer
  state, total = run.state, tc.steps
  start = int(state.step)
  config_json = config.to_json_best_effort()
  progress = ProgressBar(total)
  meter = Throughput(run.flops_per_token, run.peak_flops)
  latest: dict[str, tuple[int, dict[str, float]]] = {}  # evaluator -> (step, metrics)

  def evaluate(evaluators, step):
    results: dict[str, float] = {}
    for e in evaluators:
      with memory.phase(f"evaluation {e.name}"):
        metrics = e(state.params, step=step)
      latest[e.name] = (step, metrics)
      results.update(metrics)
    if results:
      writer.write(step, results)
    return results

  def save(step, force=False):
    if not force and not run.manager.should_save(step):
      return False
    it_state = run.train_iter.get_state() if hasattr(run.train_iter, "get_state") else None
    with memory.phase("checkpoint"):
      return checkpointing.save(run.manager, step, state, it_state, config_json, force=force)

  def log(step_done, metrics_dev, tokens):
    m = jax.device_get(metrics_dev)
    if bool(m["train/nonfinite"]):
      raise NonFiniteLossError(
          f"non-finite loss ({float(m['train/loss'])}) or gradient at step {step_done}; the update"
          " was skipped and the last good state is saved"
      )
    meter.add_step(tokens)
    if every(step_done, tc.log_every, total):
      out = {k: float(v) for k, v in m.items() if k != "train/nonfinite"}
      out.update(meter.report())
      writer.write(step_done, out)
      progress.update(step_done, out)

  for note in run.notes:
    writer.message(note)
  with jax.set_mesh(run.mesh), nn.logical_axis_rules(run.rules):
    before = evaluate([e for e in run.evaluators if e.at_start], start)
  writer.message(_start_line(run, start, total, before))
  meter.restart()  # the first window starts with the first step, not before the evaluations

  pending = None  # the previous step's metrics, read once the next step is dispatched
  stop_reason = "completed"
  phases = contextlib.ExitStack()  # host memory: the first step (compiles), then the rest
  with Preemption() as preempt, jax.set_mesh(run.mesh), nn.logical_axis_rules(run.rules), phases:
    try:
      for step in range(start + 1, total + 1):
        if step <= start + 2:
          phases.close()
          phases.enter_context(memory.phase("compile" if step == start + 1 else "training"))
        batch = next(run.train_iter)
        tokens = float(np.sum(batch["segment_ids"] > 0)) * jax.process_count()
        state, metrics = run.train_step(
            state, to_global(batch, run.batch_sharding, step_lib.BATCH_KEYS)
        )
        if pending is not None:
          log(*pending)
        pending = (step, metrics, tokens)
        save(step, force=step == total)
        due = [e for e in run.evaluators if every(step, e.every_steps, total)]
        if due:
          log(*pending)
          pending = None
          with meter.excluded():  # evaluation time is not training throughput
            evaluate(due, step)
        if every(step, config.checkpoint.export_hf_every, total, last=False):
          with meter.excluded():
            _export(run, state.params, f"hf_step_{step}")
        faults.fault_point("step", step)
        if preempt.requested or run.manager.reached_preemption(step):
          stop_reason = "preempted"
          break
      if pending is not None:
        log(*pending)
      phases.close()
    except NonFiniteLossError as e:
      # The last good state (a skipped update leaves state.step behind the loop's step). A step
      # already checkpointed is kept: saving it again would raise orbax's "already exists" in
      # front of the real cause.
      if int(state.step) not in run.manager.all_steps():
        save(int(state.step), force=True)
      run.manager.wait_until_finished()
      writer.message(f"langshift: stopped: {e}")
      writer.close()
      raise
    except StopIteration:
      stop_reason = "data_exhausted"

    step = int(state.step)
    if run.manager.latest_step() != step:
      save(step, force=True)
    run.manager.wait_until_finished()
    summary: dict[str, Any] = {
        "init": run.init_source,
        "start_step": start,
        "step": step,
        "stop_reason": stop_reason,
        "tokens_seen": meter.tokens_seen,
    }
    summary.update({f"{k}_before": v for k, v in before.items()})
    if stop_reason == "preempted":
      writer.message(f"langshift: preempted at step {step}; checkpoint saved")
      writer.close()
      return summary
    # Evaluations that did not run at the final step (the data ran out before `total`).
    evaluate([e for e in run.evaluators if latest.get(e.name, (None,))[0] != step], step)
  after = {k: v for e in run.evaluators for k, v in latest[e.name][1].items()}
  summary.update({f"{k}_after": v for k, v in after.items()})
  if config.checkpoint.export_hf_at_end:
    with memory.phase("export"):
      summary["hf_export"] = _export(run, state.params, "hf")
      if run.model_config.lora is not None:
        summary["peft_adapter"] = _export_adapter(run, state.params, "hf_adapter")
  writer.message(_done_line(run, summary, before, after))
  writer.close()
  return summary


def _start_line(run: Run, start: int, total: int, before: dict[str, float]) -> str:
  params = state_lib.count_params(run.state.params) / 1e6
  line = (
      f"langshift: {run.model_config.model_type} {params:.1f}M params from {run.init_source};"
      f" mesh {dict(run.mesh.shape)}; steps {start}->{total}"
  )
  for e in run.evaluators:
    if e.metric in before:
      line += f"; {e.metric} {before[e.metric]:.3f}"
  return line


def _done_line(run: Run, summary, before, after) -> str:
  line = f"langshift: done at step {summary['step']} ({summary['stop_reason']})"
  for e in run.evaluators:
    headline = e.headline(before, after)
    if headline:
      line += f"; {headline}"
  if "hf_export" in summary:
    line += f"; HF export: {summary['hf_export']}"
  return line


def _export_adapter(run: Run, params, name: str) -> str:
  """The adapters of a LoRA run in the PEFT layout, for the init_from_hf base model ("" where
  PEFT has no layout for the run: embeddings trained in full on tied embeddings)."""
  out = os.path.join(run.workdir, name)
  lc = run.config.train.lora
  if lc.train_embeddings and run.model_config.tie_word_embeddings:
    run.writer.message("langshift: no PEFT adapter export (tied embeddings trained in full)")
    return ""
  export_peft_adapter(
      params,
      run.model_config,
      out,
      base_model=run.config.init_from_hf,
      modules_to_save=("embed_tokens", "lm_head") if lc.train_embeddings else (),
  )
  return out


def _export(run: Run, params, name: str) -> str:
  out = os.path.join(run.workdir, name)
  template = run_chat_template(run.config, run.tokenizer)
  export_hf_model(
      params,
      run.model_config,
      out,
      tokenizer_dir=run.tokenizer_dir or None,
      dtype=run.config.checkpoint.export_dtype,
      chat_template=template,
      # A model tuned in the run's template ends its answers with the template's turn token:
      # transformers and vLLM stop on generation_config's eos ids (`with_chat_template`).
      generation_config={"eos_token_id": list(run.tokenizer.eos_ids)} if template else None,
  )
  return out
