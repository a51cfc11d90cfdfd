"""Lowering a run's programs on abstract shapes for a target's compile-only devices.

Each program is built by the engine's own code (`make_train_step`, `decode.make_engine`, the
scorer's packed forward) with the shardings the run would use, lowered on `ShapeDtypeStruct`s
and compiled by the target's compiler (libtpu, or the CUDA plugin). `memory_analysis()` of the
compiled program is per chip; `as_text()` is the optimised HLO whose collectives are counted.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from langshift.aot import models as models_lib
from langshift.aot import runs as runs_lib
from langshift.aot import targets as targets_lib
from langshift.evaluation import scoring
from langshift.generation import decode
from langshift.models import attention as attention_lib
from langshift.models import lora as lora_lib
from langshift.models.config import ModelConfig, model_config_from_dict
from langshift.models.llama import LlamaDecoder, abstract_params
from langshift.parallel import sharding as sharding_lib
from langshift.parallel.mesh import create_mesh
from langshift.train import flops as flops_lib
from langshift.train import optimizer
from langshift.train import state as state_lib
from langshift.train import step as step_lib
from langshift.train.config import ARCHITECTURE_KEYS

# The attention kernel each platform's programs are compiled with (`--attention=native`).
NATIVE_ATTENTION = {"tpu": "splash", "cuda": "cudnn"}
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
# The op after its result type (a tuple type, as async starts and combined collectives have,
# holds spaces): " all-gather(" or " all-gather-start(", never "-done(" or an instruction's name.
_COLLECTIVE_RE = re.compile(r" (" + "|".join(COLLECTIVES) + r")(?:-start)?\(")
# The TPU compiler's refusal: "RESOURCE_EXHAUSTED: Ran out of memory on HBM, ...".
_OOM_RE = re.compile(r"RESOURCE_EXHAUSTED|Ran out of memory")


class DoesNotFit(Exception):
  """A program the target's compiler refused for memory (the message is the compiler's)."""


@dataclasses.dataclass
class ProgramReport:
  """Per-chip figures of one compiled program."""

  run: str
  program: str
  settings: dict[str, Any]
  attention: str
  argument_bytes: int = 0
  output_bytes: int = 0
  alias_bytes: int = 0
  temp_bytes: int = 0
  peak_bytes: int = 0
  usable_bytes: int = 0
  collectives: dict[str, int] = dataclasses.field(default_factory=dict)
  compiler_flops: float | None = None  # cost_analysis() of the per-chip program (TPU only)
  model_flops: float = 0.0  # per chip, the convention of langshift/train/flops.py
  step_bound_s: float = 0.0  # model_flops at the chip's peak: a lower bound, not an estimate
  compile_s: float = 0.0
  refused: str = ""  # the compiler's out-of-memory message

  @property
  def fits(self) -> bool:
    return not self.refused and self.peak_bytes <= self.usable_bytes

  @property
  def margin_bytes(self) -> int:
    return self.usable_bytes - self.peak_bytes


def count_collectives(hlo_text: str) -> dict[str, int]:
  """Collective ops by kind in optimised HLO (async pairs counted once, at their start). A
  collective inside a loop body (the scanned layers) counts once, not once per iteration."""
  counts = dict.fromkeys(COLLECTIVES, 0)
  for m in _COLLECTIVE_RE.finditer(hlo_text):
    counts[m.group(1)] += 1
  return {k: v for k, v in counts.items() if v}


def _abstract(tree, shardings):
  return jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), tree, shardings
  )


def _replicated(mesh, shape, dtype):
  return jax.ShapeDtypeStruct(shape, dtype, sharding=NamedSharding(mesh, P()))


def lora_layer_targets(targets, layers, num_layers: int) -> tuple[str, ...]:
  """Adapter targets on some decoder layers only, as paths of the unscanned layout
  ("layers_<i>/..."); LEP calibration's "first and last layers" are (0, -1)."""
  chosen = sorted({i % num_layers for i in layers})
  out = []
  for target in lora_lib.resolve_targets(tuple(targets)):
    if target.startswith("^"):
      out.append(target)
    else:
      out.extend(f"^layers_{i}/(.*/)?{target}" for i in chosen)
  return tuple(out)


def train_program(run: runs_lib.TrainingRun, cfg: ModelConfig, mesh, rules):
  """(jitted train step, abstract (state, batch)) exactly as `trainer.setup` builds them."""
  train = ml_collections.ConfigDict(run.train.to_dict())
  if run.lora_layers:
    train.lora.targets = lora_layer_targets(train.lora.targets, run.lora_layers, cfg.num_layers)
  if train.trainable == "lora":
    cfg = lora_lib.with_lora(cfg, train.lora)
  model = LlamaDecoder(cfg)
  opt = ml_collections.ConfigDict(run.optimizer.to_dict())
  opt.total_steps = opt.total_steps or train.steps
  shapes = nn.unbox(abstract_params(cfg))
  trainable = optimizer.trainable_spec(train)
  tx, schedule = optimizer.make_optimizer(opt, shapes, trainable)
  abstract_state, shardings = state_lib.state_shardings(model, tx, mesh, rules)
  bs = sharding_lib.batch_sharding(mesh)
  b, t = int(train.global_batch_size), int(train.seq_len)
  batch = {
      k: jax.ShapeDtypeStruct(
          (b, t), jnp.float32 if k == "loss_weights" else jnp.int32, sharding=bs
      )
      for k in step_lib.BATCH_KEYS
  }
  fn = step_lib.make_train_step(
      model,
      tx,
      schedule,
      optimizer.trainable_mask(shapes, trainable),
      microbatches=int(train.microbatches),
      z_loss=float(train.z_loss),
      loss_chunk_size=int(train.loss_chunk_size),
  )
  step = jax.jit(
      fn, in_shardings=(shardings, bs), out_shardings=(shardings, None), donate_argnums=(0,)
  )
  flops = flops_lib.train_flops_per_token(cfg, t) * b * t
  return step, (_abstract(abstract_state, shardings), batch), flops


def _params(cfg: ModelConfig, mesh, rules):
  from langshift.checkpoints.hf_import import param_shardings  # pylint: disable=import-outside-toplevel

  shapes = nn.unbox(abstract_params(cfg))
  return _abstract(shapes, param_shardings(cfg, mesh, rules))


def generation_programs(run: runs_lib.GenerationRun, cfg: ModelConfig, mesh, rules):
  """[(name, jitted, args, flops)] for the role's prefill (a full batch of longest prompts)
  and its decode loop, built by `decode.make_engine` as `LocalGenerator` builds them."""
  bucket = 64  # LocalGenerator's length_bucket
  devices = mesh.size
  batch = -(-run.batch_size // devices) * devices  # roles.make_generator pads to the devices
  prompt = -(-run.max_input_tokens // bucket) * bucket
  capacity = -(-(run.max_input_tokens + run.max_new_tokens) // bucket) * bucket
  spec = decode.DecodeSpec(run.max_new_tokens, stop_token_ids=(0,))
  rules_t = tuple((n, tuple(a) if isinstance(a, list) else a) for n, a in rules)
  engine = decode.make_engine(cfg, spec, batch, capacity, mesh, rules_t)
  params = _params(cfg, mesh, rules)
  rng = jax.eval_shape(lambda: jax.random.key(0))
  rng = jax.ShapeDtypeStruct(rng.shape, rng.dtype, sharding=NamedSharding(mesh, P()))
  i32 = functools.partial(_replicated, mesh, dtype=jnp.int32)
  rows = (i32((batch, prompt)), i32((batch,)), i32((batch,)), i32((batch,)))
  n = flops_lib.matmul_params(cfg)
  # Arguments of later programs are the outputs of earlier ones (`out`: abstract outputs by
  # program name, with the shardings their compilation gave them).
  return [
      ("KV cache init", engine.init, lambda out: (), 0.0),
      ("decode weights", engine.decode_weights, lambda out: (params,), 0.0),
      (
          "prefill",
          engine.prefill,
          lambda out: (params, out["KV cache init"], *rows, rng),
          2.0 * n * batch * prompt,
      ),
      (
          "decode",
          engine.decode,
          lambda out: (out["decode weights"], out["KV cache init"], rng, i32(()), i32(())),
          2.0 * n * batch,  # per token step
      ),
  ]


def scoring_program(run: runs_lib.ScoringRun, cfg: ModelConfig, mesh, rules):
  """The scorer's packed forward at its batch and longest rows (`LocalScorer` settings)."""
  length = run.max_length or cfg.max_position_embeddings
  b, chunk = run.batch_size, 512  # LocalScorer's logits_chunk
  k = -(-b * length // chunk) * chunk
  fn = scoring._packed_logprobs_fn(cfg, k, chunk, 0, 4096)  # pylint: disable=protected-access
  i32 = functools.partial(_replicated, mesh, dtype=jnp.int32)
  args = (
      _params(cfg, mesh, rules),
      i32((b, length)),
      i32((b, length)),
      i32((k,)),
      i32((k,)),
      i32((0,)),
  )
  return fn, args, 2.0 * flops_lib.matmul_params(cfg) * b * length


def build_mesh(config, devices, target: targets_lib.Target, num_slices: int):
  """The experiment's mesh (config.mesh ici/dcn) over the target's devices; a mesh the
  topology cannot take names both."""
  dcn = config.mesh.dcn.to_dict()
  if num_slices > 1 and all(v == 1 for v in dcn.values()):
    dcn = dict(data=num_slices, fsdp=1, tensor=1)  # slices as data parallelism
  try:
    return create_mesh(config.mesh.ici.to_dict(), dcn, devices)
  except (ValueError, AssertionError) as e:
    raise ValueError(
        f"{target.name} ({len(devices)} chips, {num_slices} slice(s)) cannot take the config's "
        f"mesh ici={config.mesh.ici.to_dict()} dcn={dcn}: {e}"
    ) from e


def host_mesh(devices):
  """A local role's mesh: one host's devices, fsdp over them (`roles.make_generator`)."""
  first = [d for d in devices if d.process_index == devices[0].process_index]
  return create_mesh({"data": 1, "fsdp": -1, "tensor": 1}, devices=first)


def check_batch(run: runs_lib.TrainingRun, mesh, target) -> None:
  dp = mesh.shape["data"] * mesh.shape["fsdp"]
  b = int(run.train.global_batch_size)
  if b % dp or b % int(run.train.microbatches) or (b // int(run.train.microbatches)) % dp:
    raise ValueError(
        f"{run.name}: global_batch_size={b} in {run.train.microbatches} microbatch(es) does not "
        f"split over the data-parallel size {dp} of {target.name}'s mesh {dict(mesh.shape)}"
    )


def model_for(config, run, model_source: dict[str, str], numerics: dict[str, Any]) -> ModelConfig:
  """The run's architecture: a --model override for its config key, else the path it names,
  else (random init of the engine's own run) `config.model`."""
  source = model_source.get(run.model_key) or model_source.get("*") or run.model_path
  where = "--model" if source != run.model_path else f"config.{run.model_key}"
  if not source and run.model_key == "init_from_hf":
    given = {k: config.model[k] for k in ARCHITECTURE_KEYS if config.model[k] is not None}
    return model_config_from_dict({**given, **numerics})
  if not source:
    raise ValueError(
        f"{run.name}: config.{run.model_key} is empty; pass --model=<preset or checkpoint dir> "
        f"(presets: {', '.join(models_lib.PRESETS)})"
    )
  return models_lib.resolve(source, numerics, where)


def compile_one(report: ProgramReport, jitted, args, target):
  """Compiles one program into `report` (memory, collectives, FLOPs, time); returns the compiled
  program, None when the compiler refused it for memory. Attention lowers for the target's
  platform: a kernel that cannot lower is an error naming it, never a fallback."""
  start = time.perf_counter()
  try:
    try:
      with attention_lib.lowering_for(target.platform):
        lowered = jitted.lower(*args)
    except Exception as e:  # pylint: disable=broad-except
      raise ValueError(
          f"{report.run} / {report.program}: attention_impl={report.attention} cannot lower "
          f"for {target.name} ({' '.join(str(e).split())[:300]}); --attention=xla compiles "
          "the XLA path instead"
      ) from e
    compiled = lowered.compile()
  except Exception as e:  # pylint: disable=broad-except
    if _OOM_RE.search(str(e)):
      report.compile_s = time.perf_counter() - start
      report.refused = " ".join(str(e).split())[:400]
      report.usable_bytes = targets_lib.usable_bytes(target)
      return None
    raise
  report.compile_s = time.perf_counter() - start
  mem = compiled.memory_analysis()
  report.argument_bytes = int(mem.argument_size_in_bytes)
  report.output_bytes = int(mem.output_size_in_bytes)
  report.alias_bytes = int(mem.alias_size_in_bytes)
  report.temp_bytes = int(mem.temp_size_in_bytes)
  report.peak_bytes = (
      report.argument_bytes + report.output_bytes - report.alias_bytes + report.temp_bytes
  )
  report.usable_bytes = targets_lib.usable_bytes(target)
  report.collectives = count_collectives(compiled.as_text())
  cost = compiled.cost_analysis()
  if isinstance(cost, list):
    cost = cost[0] if cost else None
  if cost and cost.get("flops", -1) > 0:
    report.compiler_flops = float(cost["flops"])
  return compiled


def compile_config(
    config,
    target: targets_lib.Target,
    *,
    num_slices: int = 1,
    model_source: dict[str, str] | None = None,
    attention: str = "native",
    only: str = "",
) -> list[ProgramReport]:
  """Compiles every program of `config` for `target`; one report per program, in run order.

  Everything that can be checked without compiling (models, mesh, batch splits) is checked for
  every run before the first compilation.
  """
  model_source = model_source or {}
  all_runs = [r for r in runs_lib.runs(config) if not only or only in r.name]
  devices = targets_lib.topology_devices(target, num_slices)
  mesh = build_mesh(config, devices, target, num_slices)
  local = host_mesh(targets_lib.topology_devices(targets_lib.host_target(target)))
  rules = sharding_lib.rules_from_config(config.logical_rules)
  native = NATIVE_ATTENTION[target.platform]

  def impl(run) -> str:
    """native: the platform's kernel; config: what the run is configured with (local roles and
    the scorer load with the XLA path); xla: the XLA path everywhere."""
    if attention == "native":
      return native
    if attention == "config":
      return run.model.attention_impl if isinstance(run, runs_lib.TrainingRun) else "xla"
    return "xla"

  plans = []
  for run in all_runs:
    if isinstance(run, runs_lib.TrainingRun):
      numerics = {k: run.model[k] for k in ("dtype", "param_dtype", "scan_layers", "remat_policy")}
      cfg = model_for(config, run, model_source, {**numerics, "attention_impl": impl(run)})
      check_batch(run, mesh, target)
      if int(run.train.seq_len) > cfg.max_position_embeddings:
        raise ValueError(
            f"{run.name}: seq_len={run.train.seq_len} exceeds the model's "
            f"max_position_embeddings={cfg.max_position_embeddings}"
        )
    else:
      numerics = dict(dtype=run.dtype, param_dtype=run.dtype)
      cfg = model_for(config, run, model_source, {**numerics, "attention_impl": impl(run)})
    if cfg.attention_impl == "cudnn" and cfg.dtype not in ("bfloat16", "float16"):
      raise ValueError(
          f"{run.name}: attention_impl=cudnn cannot lower {cfg.dtype} activations for "
          f"{target.name} (cuDNN flash attention takes bfloat16/float16); --attention=xla "
          "compiles the XLA path instead"
      )
    plans.append((run, cfg))
  peak = targets_lib.CHIPS[target.chip].peak_flops
  reports = []
  for run, cfg in plans:
    settings = runs_lib.describe(run)
    if isinstance(run, runs_lib.ScoringRun):
      settings["length"] = run.max_length or cfg.max_position_embeddings
    if isinstance(run, runs_lib.TrainingRun):
      with nn.logical_axis_rules(rules):
        step, args, flops = train_program(run, cfg, mesh, rules)
        programs = [("train step", step, args, flops / mesh.size)]
    elif isinstance(run, runs_lib.GenerationRun):
      with nn.logical_axis_rules(rules):
        programs = [
            (n, f, a, fl / local.size)
            for n, f, a, fl in generation_programs(run, cfg, local, rules)
        ]
    else:
      with nn.logical_axis_rules(rules):
        fn, args, flops = scoring_program(run, cfg, local, rules)
        programs = [("forward", fn, args, flops / local.size)]
    outputs = {}
    mesh_now = mesh if isinstance(run, runs_lib.TrainingRun) else local
    for name, jitted, args, flops in programs:
      args = args(outputs) if callable(args) else args
      report = ProgramReport(run.name, name, settings, cfg.attention_impl, model_flops=flops)
      with jax.set_mesh(mesh_now), nn.logical_axis_rules(rules):
        compiled = compile_one(report, jitted, args, target)
      report.step_bound_s = flops / peak
      report.settings = {**settings, "chips": mesh_now.size}
      reports.append(report)
      if compiled is None:
        break  # refused: the run's later programs take its outputs
      outputs[name] = _abstract(jax.eval_shape(jitted, *args), compiled.output_shardings)
  return reports


def gib(n: float) -> float:
  return n / targets_lib.GIB


def fit_line(target, report: ProgramReport) -> str:
  """The one-line reason a program does not fit (target, program, required vs available)."""
  need = f"{gib(report.peak_bytes):.2f} GiB"
  have = f"{gib(report.usable_bytes):.2f} GiB"
  if report.refused:
    # "... required for HLO temporaries (36.62G) exceeds available HBM (15.75G)."
    m = re.search(r"\(([\d.]+)([GMK])\) exceeds available HBM \(([\d.]+)([GMK])\)", report.refused)
    need, have = (
        (f"{m.group(1)} {m.group(2)}iB", f"{m.group(3)} {m.group(4)}iB")
        if m
        else ("more than HBM", have)
    )
    need += " (the TPU compiler's count)"
  return (
      f"{target.name}: {report.run} / {report.program} does not fit: needs {need} per chip, "
      f"{have} available"
  )
