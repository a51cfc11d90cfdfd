"""Which models an experiment trains, generates with and scores with, read from its config.

`runs(config)` is the one place that maps a recipe's stages onto the settings of their programs:
each recipe keeps the settings of its secondary training runs (native alignment's worker SFT,
LEP's calibration), generation roles and scorer in its own config section, and this function
reads them there. When a recipe moves a setting, this is the function to re-point.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections


@dataclasses.dataclass(frozen=True)
class TrainingRun:
  """A training run: the train step at its own batch, length, dtype, remat and trainable set."""

  name: str
  model_key: str  # the config key naming the checkpoint ("init_from_hf", "lep.base", ...)
  model_path: str
  model: ml_collections.ConfigDict  # numerics: dtype, param_dtype, remat_policy, ...
  train: ml_collections.ConfigDict
  optimizer: ml_collections.ConfigDict
  # LoRA on some decoder layers only (LEP calibration): layer indices, negative from the end.
  lora_layers: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class GenerationRun:
  """A local generation role: prefill of a full batch of prompts, then the decode loop."""

  name: str
  model_key: str
  model_path: str
  dtype: str
  batch_size: int
  max_input_tokens: int
  max_new_tokens: int


@dataclasses.dataclass(frozen=True)
class ScoringRun:
  """The local scorer's forward (perplexity selection, log-likelihood benchmarks)."""

  name: str
  model_key: str
  model_path: str
  dtype: str
  batch_size: int
  max_length: int  # 0: the model's max_position_embeddings


Run = TrainingRun | GenerationRun | ScoringRun


def _main(config, name: str, key: str, path: str) -> TrainingRun:
  return TrainingRun(name, key, path, config.model, config.train, config.optimizer)


def _role(name: str, role, key: str, path: str) -> list[GenerationRun]:
  """A generation role that runs here (backend local); a served one compiles nothing here."""
  if role.backend != "local":
    return []
  return [
      GenerationRun(
          name,
          key,
          path,
          role.dtype,
          int(role.batch_size),
          int(role.max_input_tokens),
          int(role.max_new_tokens),
      )
  ]


def _calibration(config, cal) -> TrainingRun:
  """LEP's calibration: LoRA (`calibration.lora`) on some layers of the propagated model, at its
  own batch and length. Its run is `calibration.run` (train / model / optimizer) where the recipe
  gives it one, else the experiment's sections with `calibration`'s batch and length."""
  if "run" in cal:
    train = ml_collections.ConfigDict(cal.run.train.to_dict())
    model = ml_collections.ConfigDict({**config.model.to_dict(), **cal.run.model.to_dict()})
    opt = ml_collections.ConfigDict({**config.optimizer.to_dict(), **cal.run.optimizer.to_dict()})
  else:
    train = ml_collections.ConfigDict(config.train.to_dict())
    train.update(global_batch_size=cal.global_batch_size, seq_len=cal.seq_len)
    model = ml_collections.ConfigDict(config.model.to_dict())
    opt = config.optimizer
  train.trainable = "lora"
  train.lora.update(
      rank=cal.lora.rank,
      alpha=cal.lora.alpha,
      dropout=cal.lora.dropout,
      targets=tuple(cal.lora.targets),
      train_embeddings=cal.lora.train_embeddings,
      param_dtype=cal.lora.param_dtype,
  )
  model.scan_layers = False  # adapters on some layers: the unscanned layout names each one
  return TrainingRun(
      "calibration", "lep.instruct", config.lep.instruct, model, train, opt, tuple(cal.lora.layers)
  )


def runs(config: ml_collections.ConfigDict) -> list[Run]:
  """Every program-producing run of `config`'s recipe, in the order the recipe runs them."""
  recipe = config.recipe
  if recipe == "cpt":
    return [_main(config, "train", "init_from_hf", config.init_from_hf)]
  if recipe == "inscp":
    c = config.inscp
    out: list[Run] = []
    if c.max_perplexity is not None or c.min_perplexity is not None:
      s = c.score
      out.append(
          ScoringRun(
              "perplexity selection",
              "inscp.instruct",
              c.instruct,
              s.dtype,
              int(s.batch_size),
              int(s.max_length),
          )
      )
    return out + [_main(config, "InsCP train", "inscp.instruct", c.instruct)]
  if recipe == "lep":
    c = config.lep
    out = [_main(config, "embedding CPT", "lep.base", c.base)]
    cal = c.calibration
    if cal.enabled:
      if cal.answers == "instruct":
        out += _role("calibration answers", cal.answerer, "lep.instruct", c.instruct)
      out.append(_calibration(config, cal))
    if c.evaluate.suite:
      e = c.evaluate
      out.append(ScoringRun("evaluate", "lep.instruct", c.instruct, e.dtype, int(e.batch_size), 0))
    return out
  if recipe == "native_align":
    c = config.native_align
    out = _role("seed rewrite (expert)", c.expert, "native_align.expert.hf_dir", c.expert.hf_dir)
    w = c.worker_sft
    out.append(
        TrainingRun(
            "worker SFT", "native_align.worker_init", c.worker_init, w.model, w.train, w.optimizer
        )
    )
    out += _role("corpus rewrite (worker)", c.worker, "native_align.worker_init", c.worker_init)
    out.append(_main(config, "student CPT", "init_from_hf", config.init_from_hf))
    e = c.evaluate
    if any(e[k] for k in ("arabic_mmlu", "acva", "exams", "aratrust")):
      out.append(
          ScoringRun(
              "evaluate", "init_from_hf", config.init_from_hf, "bfloat16", int(e.batch_size), 0
          )
      )
    return out
  if recipe == "noninstruct":
    c = config.noninstruct
    out = []
    if c.mode == "continuation":
      out += _role(
          "teacher continuations", c.teacher, "noninstruct.teacher.hf_dir", c.teacher.hf_dir
      )
    return out + [_main(config, "SFT", "init_from_hf", config.init_from_hf)]
  if recipe == "pinch":
    c = config.pinch
    out = [_main(config, "instruction tuning", "init_from_hf", config.init_from_hf)]
    if c.evaluate.responses:
      out.append(
          GenerationRun(
              "evaluate responses",
              "init_from_hf",
              config.init_from_hf,
              config.model.dtype,
              int(c.evaluate.batch_size),
              int(config.train.seq_len),
              int(c.evaluate.max_new_tokens),
          )
      )
    return out
  raise ValueError(
      f"config.recipe={recipe!r}: langshift.aot knows cpt, inscp, lep, "
      "native_align, noninstruct, pinch"
  )


def describe(run: Run) -> dict[str, Any]:
  """The settings of `run` that shape its programs (for the report)."""
  if isinstance(run, TrainingRun):
    t = run.train
    out = dict(
        batch=int(t.global_batch_size),
        seq_len=int(t.seq_len),
        microbatches=int(t.microbatches),
        trainable=str(t.trainable),
        dtype=run.model.dtype,
        param_dtype=run.model.param_dtype,
        remat=run.model.remat_policy,
    )
    if t.trainable == "lora":
      out["lora_rank"] = int(t.lora.rank)
    return out
  if isinstance(run, GenerationRun):
    return dict(
        batch=run.batch_size, prompt=run.max_input_tokens, new=run.max_new_tokens, dtype=run.dtype
    )
  return dict(batch=run.batch_size, length=run.max_length, dtype=run.dtype)
