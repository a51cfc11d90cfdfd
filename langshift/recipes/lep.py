"""LEP end to end: `run_lep(config, workdir)`.

Learned embedding propagation: Tikhomirov & Chernyshev 2024, "Facilitating large language model
Russian adaptation with Learned Embedding Propagation", arXiv:2412.21140.

One config, five resumable stages (`langshift/recipes/stages.py`), each writing one folder, and
two optional ones:

  tokenizer_new/  the target tokenizer (config.lep.tokenizer_variant) trained on the text of
                  config.data's source files;
  base_init/      the base model with its embeddings resized to the new vocabulary, a new
                  token's input and output rows the mean of its old sub-tokens' rows;
  cpt/            embedding-only continual pre-training of base_init on config.data
                  (`train_and_evaluate`, trainable preset "embeddings"); `cpt/hf` is its
                  float32 export, the donor of the next stage;
  lep_instruct/   the instruct model with embeddings propagated from the donor (swap | overlap |
                  conversion), its own chat tokens appended with their rows, its chat template
                  and special ids: an HF checkpoint + tokenizer for transformers/vLLM;
  calibration_answers/, calibrated/
                  (with `lep.calibration.enabled`, `lep_calibration.py`) the original instruct
                  model's answers to a prompt set (graded by a judge, joined by copy examples),
                  and LoRA on the propagated model's first and last layers plus the embeddings
                  trained on them: calibrated/hf is then the chat model;
  evaluate/       the chat model on a benchmark suite, zero-shot (`lep_evaluation.py`; Darumeru
                  in the published setting): per-task scores and the micro-average.

With `lep.shared_stages` the first three stages run in a folder shared by every run with the
same inputs to them (`shared_stages_dir`): a sweep's propagation cells of one tokenizer train
CPT once. A killed run continues: finished stages are skipped, CPT resumes from its own
checkpoint. The recipe's settings are the `lep` section (`lep_config()`); the engine settings CPT
needs are stated in the experiment file and checked, not overridden (`REQUIRED_SETTINGS`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import ml_collections
import numpy as np

from langshift import config_lib
from langshift.checkpoints.hf_export import export_hf_model
from langshift.checkpoints.hf_import import load_hf_model
from langshift.data.config import resolve_sources
from langshift.embeddings.initialization import INIT_METHODS, resize_embedding_params
from langshift.embeddings.param_tree import embedding_matrices
from langshift.embeddings.propagation import PROPAGATION_METHODS, propagate_embedding_params
from langshift.embeddings.vocabulary_map import build_vocabulary_map
from langshift.recipes import lep_calibration, lep_evaluation, lep_inputs
from langshift.recipes import stages as stages_lib
from langshift.recipes.stages import StageInterrupted
from langshift.tokenization.adaptation import VARIANTS, build_tokenizer
from langshift.tokenization.extension import next_free_id
from langshift.tokenization.instruct_tokens import write_instruct_tokenizer
from langshift.tokenization.tokenizer_files import (
    read_tokenizer_config,
    read_tokenizer_json,
    write_tokenizer_dir,
)
from langshift.tokenization.vocabulary import vocabulary

STAGE_DIRS = dict(
    tokenizer="tokenizer_new",
    init="base_init",
    cpt="cpt",
    propagate="lep_instruct",
    **lep_calibration.STAGE_DIRS,
    evaluate="evaluate",
)
# The stages that read neither the instruct model nor the propagation: runs that differ only
# in what comes after them (a sweep's propagation cells) can share one copy (`lep.shared_stages`).
SHAREABLE_STAGES = ("tokenizer", "init", "cpt")
# Generation settings of the instruct model that name token ids (remapped to the new vocabulary).
GENERATION_ID_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id")


def lep_paths(workdir: str, shared_dir: str = "") -> dict[str, str]:
  """Each stage's folder: in `workdir`, or for the shareable stages in `shared_dir` if given."""
  return {
      name: os.path.join(shared_dir if shared_dir and name in SHAREABLE_STAGES else workdir, d)
      for name, d in STAGE_DIRS.items()
  }


def shared_stages_dir(config, workdir: str) -> str:
  """`<lep.shared_stages>/<fingerprint>`: the folder of the tokenizer, init and CPT stages of
  every run with these stages' inputs ("" when `lep.shared_stages` is unset). A relative
  `lep.shared_stages` is taken from the workdir (a sweep's "../lep_shared" is one folder beside
  its cells). Keyed by the fingerprint of all three stages' inputs, so a run whose CPT would
  differ never finds another's; the stage markers there are compared key by key all the same."""
  if not config.lep.shared_stages:
    return ""
  inputs = {name: stage_inputs(config, name) for name in SHAREABLE_STAGES}
  root = os.path.join(workdir, config.lep.shared_stages)
  return os.path.normpath(os.path.join(root, stages_lib.fingerprint(inputs)))


def lep_config() -> ml_collections.ConfigDict:
  """The recipe's own config section, `config.lep` (the engine's base schema has none)."""
  placeholder = ml_collections.config_dict.placeholder
  return ml_collections.ConfigDict(
      dict(
          base="",  # local HF directory of the base model (it is continually pre-trained)
          instruct="",  # local HF directory of its instruct model (it receives the embeddings)
          tokenizer_variant="extended",  # bpe | unigram | extended | optimized
          # SentencePiece model trained on `data`'s source files: the whole new vocabulary for
          # bpe/unigram, the pool of candidate pieces for extended/optimized (LEP: 32k Mistral,
          # 128k Llama-3). A soft limit: a corpus too small to reach it gives fewer pieces.
          new_vocab_size=32000,
          max_new_tokens=placeholder(int),  # None: every new piece
          shrink_to=placeholder(int),  # optimized: old vocab cut to this
          tokenizer_max_texts=1_000_000,  # lines of the data sources the tokenizer is trained on
          init="mean",  # new rows: mean of old sub-token rows (LEP) | random (matched mean/std)
          propagation="conversion",  # swap | overlap | conversion
          # Dtype of the chunked least-squares products; they are summed and solved in float64
          # either way. float32 is ~4x faster on CPU; it moves the fitted map by ~1e-6 relative,
          # and ~3 in 10,000 bf16 entries of the result round the other way (docs/benchmarks.md).
          propagation_products="float32",  # float32 | float64
          # Optional: LoRA calibration of the propagated model (lep_calibration.py).
          calibration=lep_calibration.calibration_config(),
          # The last stage: the chat model on a benchmark suite, zero-shot (lep_evaluation.py).
          evaluate=lep_evaluation.evaluate_config(),
          # A folder for the tokenizer, init and CPT stages shared by runs that differ only in
          # later stages (propagation, calibration, evaluation): each set of those stages' inputs
          # gets a sub-folder named by their fingerprint, so the first run trains CPT and the
          # next ones reuse it. Relative to the workdir; "": every run has its own.
          shared_stages="",
      )
  )


# Settings the CPT stage needs and the experiment file must state (the recipe checks them rather
# than overriding them): embeddings only (LEP), and a float32 export of the donor, which
# the next stage reads back for a float64 least-squares fit with no bf16 rounding in between.
REQUIRED_SETTINGS = {
    "train.trainable": "embeddings",
    "checkpoint.export_hf_at_end": True,
    "checkpoint.export_dtype": "float32",
    # The recipe points CPT at its own stage outputs (base_init, tokenizer_new).
    "init_from_hf": "",
    "tokenizer": "",
}

# Every config value each stage reads (its fingerprint in the stage marker). The tokenizer stage
# also reads, per source, the fields below (`lep_inputs.corpus_texts`).
STAGE_KEYS = {
    "tokenizer": (
        "lep.base",
        "lep.tokenizer_variant",
        "lep.new_vocab_size",
        "lep.max_new_tokens",
        "lep.shrink_to",
        "lep.tokenizer_max_texts",
        "data.on_bad_record",
    ),
    "init": ("lep.base", "lep.init", "seed"),
    "cpt": ("seed", "model", "data", "train", "optimizer"),
    "propagate": ("lep.base", "lep.instruct", "lep.propagation", "lep.propagation_products"),
}
TOKENIZER_SOURCE_FIELDS = (
    "path",
    "format",
    "text_field",
    "text_unit",
    "tfds_name",
    "split",
    "data_dir",
)


def stage_inputs(config, stage: str) -> dict[str, Any]:
  """The flat config values stage `stage` reads: what its marker records and compares."""
  if stage in lep_calibration.STAGE_KEYS:
    return lep_calibration.stage_inputs(config, stage)
  if stage == "evaluate":
    return config_lib.select(config, lep_evaluation.STAGE_KEYS)
  inputs = config_lib.select(config, STAGE_KEYS[stage])
  if stage == "tokenizer":
    for src in resolve_sources(config.data):
      inputs.update({f"data.sources.{src.name}.{f}": src[f] for f in TOKENIZER_SOURCE_FIELDS})
  return inputs


@stages_lib.stoppable
def run_lep(
    config: ml_collections.ConfigDict, workdir: str, *, log: Callable[[str], None] = print
) -> dict[str, Any]:
  """Runs (or continues) every stage; returns {'status', 'stages': {name: summary}, 'export'}.

  status is 'preempted' when CPT stopped early (SIGTERM): rerun the same command to go on.
  """
  check_lep_config(config)
  lep = config.lep
  shared_dir = shared_stages_dir(config, workdir)
  paths = lep_paths(workdir, shared_dir)
  runner = stages_lib.recipe_runner(config, workdir, log, STAGE_DIRS)
  # The shareable stages run under a runner of the shared folder (its markers and lock) inside
  # this workdir's own stage, whose marker then records the shared summary for this run.
  shared = stages_lib.StageRunner(shared_dir, log=log) if shared_dir else None
  stages: dict[str, Any] = {}

  def run(name: str, body, *, clear_partial: bool = True, collective: bool = False):
    inputs = stage_inputs(config, name)
    if shared is None or name not in SHAREABLE_STAGES:
      return runner.run(
          name,
          paths[name],
          body,
          inputs=inputs,
          clear_partial=clear_partial,
          collective=collective,
      )

    def in_shared_dir():
      summary = shared.run(
          name,
          paths[name],
          body,
          inputs=inputs,
          clear_partial=clear_partial,
          collective=collective,
      )
      if summary.get("skipped"):
        runner.log(f"langshift: stage {name}: reused from {shared_dir}")
      return {**summary, "shared_dir": shared_dir}

    # Every process enters: the shared runner decides who runs the body; the partial output
    # lives in the shared folder, so this workdir's runner never clears it.
    return runner.run(
        name, paths[name], in_shared_dir, inputs=inputs, clear_partial=False, collective=True
    )

  stages["tokenizer"] = run("tokenizer", lambda: build_target_tokenizer(config, paths["tokenizer"]))
  stages["init"] = run(
      "init",
      lambda: initialise_base(
          lep.base, paths["tokenizer"], paths["init"], method=lep.init, seed=config.seed
      ),
  )

  def train(name: str, body) -> bool:
    """A training stage (every process; resumes its checkpoint); False when it was preempted."""
    try:
      stages[name] = run(name, body, clear_partial=False, collective=True)
      return True
    except StageInterrupted as e:
      runner.log(f"langshift: LEP stopped during {name}; rerun the same command to continue")
      stages[name] = e.summary
      return False

  preempted = {"status": "preempted", "stages": stages, "export": None}
  if not train("cpt", lambda: continual_pretraining(config, paths)):
    return preempted
  stages["propagate"] = run(
      "propagate",
      lambda: propagate_into_instruct(
          lep.base,
          lep.instruct,
          paths,
          method=lep.propagation,
          product_dtype=lep.propagation_products,
      ),
  )
  export = paths["propagate"]
  if lep.calibration.enabled:
    stages["calibration_answers"] = run(
        "calibration_answers",
        lambda: lep_calibration.generate_answers(
            config, paths["calibration_answers"], paths["propagate"]
        ),
        clear_partial=False,
    )
    calibrate = lambda: lep_calibration.calibrate(  # noqa: E731
        config, paths["calibrate"], paths["calibration_answers"], paths["propagate"]
    )
    if not train("calibrate", calibrate):
      return preempted
    export = os.path.join(paths["calibrate"], "hf")
  if lep.evaluate.suite:
    stages["evaluate"] = run(
        "evaluate", lambda: lep_evaluation.evaluate(config, export, paths["evaluate"])
    )
    runner.log(f"langshift: stage evaluate: {stages_lib.format_counts(stages['evaluate'])}")
  runner.log(f"langshift: LEP done; instruct model with the new vocabulary: {export}")
  return {"status": "done", "stages": stages, "export": export}


def check_lep_config(config) -> None:
  """One-line errors, before any stage runs, for bad or contradictory settings."""
  if "lep" not in config:
    raise ValueError(
        "config.recipe='lep' needs a config.lep section: "
        "config.lep = langshift.recipes.lep.lep_config()"
    )
  lep = config.lep
  config_lib.check_fields(dict(lep), lep_config(), "config.lep")
  for key in ("base", "instruct"):
    if not lep[key] or not os.path.isdir(lep[key]):
      raise ValueError(
          f"config.lep.{key}={lep[key]!r}: give a local Hugging Face model " "directory"
      )
  for key, value, choices in (
      ("tokenizer_variant", lep.tokenizer_variant, VARIANTS),
      ("init", lep.init, INIT_METHODS),
      ("propagation", lep.propagation, PROPAGATION_METHODS),
      ("propagation_products", lep.propagation_products, ("float32", "float64")),
  ):
    if value not in choices:
      raise ValueError(f"config.lep.{key}={value!r}; expected one of {choices}")
  lep_calibration.check_calibration_config(config)
  lep_evaluation.check_evaluate_config(config)
  if lep.tokenizer_variant == "optimized" and not lep.shrink_to:
    raise ValueError("config.lep.tokenizer_variant='optimized' needs config.lep.shrink_to")
  flat = config_lib.flatten(config)
  for key, required in REQUIRED_SETTINGS.items():
    if flat[key] != required:
      raise ValueError(
          f"config.{key}={flat[key]!r} contradicts the LEP recipe, which needs "
          f"{required!r} (see REQUIRED_SETTINGS in langshift/recipes/lep.py)"
      )


def build_target_tokenizer(config, out_dir: str) -> dict[str, Any]:
  """Stage (a): the variant's tokenizer.json, with the base's special tokens and chat template
  when it extends the base (bpe/unigram replace it: SentencePiece's own <s>, </s>, <unk>)."""
  lep = config.lep
  texts = lep_inputs.corpus_texts(config.data, lep.tokenizer_max_texts)
  base_source = lep_inputs.tokenizer_source(lep.base)
  # hard_vocab_limit=False: a corpus too small for new_vocab_size yields fewer pieces, not an
  # error (the limit is what LEP's tokenizers were trained with on big corpora).
  spec = build_tokenizer(
      lep.tokenizer_variant,
      texts,
      vocab_size=lep.new_vocab_size,
      base=base_source,
      max_new_tokens=lep.max_new_tokens,
      shrink_to=lep.shrink_to,
      hard_vocab_limit=False,
  )
  if lep.tokenizer_variant in ("bpe", "unigram"):
    names, extra = dict(lep_inputs.SENTENCEPIECE_SPECIALS), {}
  else:
    names = lep_inputs.special_token_strings(lep.base)
    base_config = read_tokenizer_config(lep.base)
    extra = dict(
        chat_template=base_config.get("chat_template"),
        model_max_length=base_config.get("model_max_length"),
    )
  present = lep_inputs.special_token_ids(spec, names)
  write_tokenizer_dir(out_dir, spec, **{k: names[k] for k in present}, **extra)
  return dict(
      variant=lep.tokenizer_variant,
      texts=len(texts),
      old_size=vocabulary(base_source).size,
      new_size=next_free_id(spec),
  )


def lep_vocabulary_map(base_dir: str, tokenizer_dir: str):
  """Old (base) -> new ids; a replaced tokenizer's <s>/</s>/<unk> map onto the base's own."""
  new_names = lep_inputs.special_token_strings(tokenizer_dir)
  old_names = lep_inputs.special_token_strings(base_dir)
  special_map = {new_names[k]: old_names[k] for k in new_names if k in old_names}
  return build_vocabulary_map(
      lep_inputs.tokenizer_source(base_dir),
      read_tokenizer_json(tokenizer_dir),
      special_token_map=special_map,
  )


def initialise_base(
    base_dir: str, tokenizer_dir: str, out_dir: str, *, method: str, seed: int
) -> dict[str, Any]:
  """Stage (b): base_init = the base with new-vocabulary embeddings, in the base's dtype."""
  dtype = lep_inputs.checkpoint_dtype(base_dir)
  cfg, params = load_hf_model(base_dir, param_dtype=dtype, on_host=True)
  vocab_map = lep_vocabulary_map(base_dir, tokenizer_dir)
  params = resize_embedding_params(params, vocab_map, method=method, seed=seed)
  ids = lep_inputs.special_token_ids(
      read_tokenizer_json(tokenizer_dir), lep_inputs.special_token_strings(tokenizer_dir)
  )
  cfg = cfg.replace(
      vocab_size=vocab_map.new_size,
      bos_token_id=ids.get("bos_token"),
      eos_token_id=ids.get("eos_token"),
      pad_token_id=ids.get("pad_token"),
  )
  export_hf_model(params, cfg, out_dir, tokenizer_dir=tokenizer_dir, dtype=dtype)
  return dict(
      vocab_size=vocab_map.new_size,
      kept=int(vocab_map.kept.sum()),
      fallback=int((vocab_map.fallback & ~vocab_map.kept).sum()),
      dtype=dtype,
  )


def continual_pretraining(config, paths: dict[str, str]) -> dict[str, Any]:
  """Stage (c): this config's training run on base_init, embeddings only."""
  # Only the wiring to this recipe's own stage outputs is set here; the settings CPT needs
  # (REQUIRED_SETTINGS) come from the experiment file and were checked by check_lep_config.
  cpt = config.copy_and_resolve_references()
  cpt.recipe = "cpt"
  cpt.init_from_hf = paths["init"]
  cpt.tokenizer = paths["tokenizer"]
  from langshift.train.trainer import train_and_evaluate  # the engine; heavy import

  summary = train_and_evaluate(cpt, paths["cpt"])
  if summary.get("stop_reason") == "preempted":
    raise StageInterrupted("cpt", summary)
  return summary


def propagate_into_instruct(
    base_dir: str,
    instruct_dir: str,
    paths: dict[str, str],
    *,
    method: str,
    product_dtype: str = "float32",
) -> dict[str, Any]:
  """Stages (d, e): instruct embeddings from the donor (cpt/hf), exported with the instruct
  model's chat tokens, template and special ids; every other weight is the instruct model's."""
  out_dir = paths["propagate"]
  donor_dir = os.path.join(paths["cpt"], "hf")
  dtype = lep_inputs.checkpoint_dtype(instruct_dir)
  instruct_cfg, instruct_params = load_hf_model(instruct_dir, param_dtype=dtype, on_host=True)
  vocab_map = lep_vocabulary_map(base_dir, paths["tokenizer"])
  tokens = write_instruct_tokenizer(out_dir, read_tokenizer_json(paths["tokenizer"]), instruct_dir)
  params = propagate_embedding_params(
      lep_inputs.hf_embedding_params(base_dir),
      instruct_params,
      lep_inputs.hf_embedding_params(donor_dir),
      vocab_map,
      method=method,
      special_rows=tokens.special_rows,
      product_dtype=np.dtype(product_dtype),
  )
  vocab_size = embedding_matrices(params)["embed"].shape[0]
  to_new = {instruct_id: new_id for new_id, instruct_id in tokens.special_rows}
  eos = _remap_ids(instruct_cfg.eos_token_id, to_new)
  eos = (eos,) if isinstance(eos, int) else tuple(eos or ())
  if "eos_token" in tokens.special_ids and tokens.special_ids["eos_token"] not in eos:
    eos = (tokens.special_ids["eos_token"], *eos)
  cfg = instruct_cfg.replace(
      vocab_size=vocab_size,
      bos_token_id=tokens.special_ids.get(
          "bos_token", _remap_ids(instruct_cfg.bos_token_id, to_new)
      ),
      eos_token_id=(eos[0] if len(eos) == 1 else tuple(eos)) if eos else None,
      pad_token_id=tokens.special_ids.get(
          "pad_token", _remap_ids(instruct_cfg.pad_token_id, to_new)
      ),
  )
  export_hf_model(
      params,
      cfg,
      out_dir,
      tokenizer_dir=out_dir,
      dtype=dtype,
      generation_config=_generation_config(instruct_dir, to_new),
  )
  return dict(
      method=method,
      vocab_size=vocab_size,
      dtype=dtype,
      appended_special_tokens=vocab_size - vocab_map.new_size,
      special_ids=tokens.special_ids,
  )


def _remap_ids(value, to_new: dict[int, int]):
  """An id, or a list of ids, of the instruct vocabulary in the new one (dropping the unmapped)."""
  if value is None:
    return None
  if isinstance(value, int):
    return to_new.get(value)
  mapped = tuple(to_new[i] for i in value if i in to_new)
  return mapped or None


def _generation_config(instruct_dir: str, to_new: dict[int, int]) -> dict[str, Any]:
  """The instruct model's sampling defaults, with its token ids moved to the new vocabulary."""
  path = os.path.join(instruct_dir, "generation_config.json")
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    gen = json.load(f)
  for key in GENERATION_ID_KEYS:
    if key in gen:
      mapped = _remap_ids(gen.pop(key), to_new)
      if mapped is not None:
        gen[key] = list(mapped) if isinstance(mapped, tuple) else mapped
  return gen
