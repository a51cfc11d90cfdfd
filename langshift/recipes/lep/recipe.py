"""LEP end to end: the `lep` recipe's stages (`config.recipe = "lep"`).

Learned embedding propagation: Tikhomirov & Chernyshev 2024, "Facilitating large language model
Russian adaptation with Learned Embedding Propagation", arXiv:2412.21140.

Five resumable stages (`langshift/recipes/recipe.py`), each writing one folder of the workdir,
and three optional ones:

  tokenizer_new/  the target tokenizer (config.lep.tokenizer_variant) trained on the text of
                  config.data's source files;
  base_init/      the base model with its embeddings resized to the new vocabulary, a new
                  token's input and output rows the mean of its old sub-tokens' rows;
  cpt/            embedding-only continual pre-training of base_init on config.data (the
                  experiment's own training run; trainable preset "embeddings"); `cpt/hf` is its
                  float32 export, the donor of the next stage;
  lep_instruct/   the instruct model with embeddings propagated from the donor (swap | overlap |
                  conversion), its own chat tokens appended with their rows, its chat template
                  and special ids: an HF checkpoint + tokenizer for transformers/vLLM;
  calibration_answers/, calibrated/
                  (with `lep.calibration.enabled`, `calibration.py`) the original instruct
                  model's answers to a prompt set (graded by a judge, joined by copy examples),
                  and LoRA on the propagated model's first and last layers plus the embeddings
                  trained on them (`lep.calibration.run`): calibrated/hf is then the chat model;
  evaluate/       the chat model on a benchmark suite, zero-shot (`evaluation.py`; Darumeru in the
                  published setting): per-task scores and the micro-average.

With `lep.shared_stages` the first three stages run in a folder shared by every run with the
same inputs to them (`shared_stages_dir`): a sweep's propagation cells of one tokenizer train
CPT once. A killed run continues: finished stages are skipped, CPT and the calibration resume
from their own checkpoints. The recipe's settings are the `lep` section (`config.py`); the engine
settings CPT needs are stated in the experiment file and checked, not overridden
(`config.REQUIRED_SETTINGS`).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from langshift.checkpoints.hf_export import export_hf_model
from langshift.checkpoints.hf_import import load_hf_model
from langshift.data.config import resolve_sources
from langshift.embeddings.initialization import resize_embedding_params
from langshift.embeddings.param_tree import embedding_matrices
from langshift.embeddings.propagation import propagate_embedding_params
from langshift.embeddings.vocabulary_map import build_vocabulary_map
from langshift.recipes import stages as stages_lib
from langshift.recipes import training
from langshift.recipes.lep import calibration, evaluation
from langshift.recipes.lep import config as lep_config_lib
from langshift.recipes.lep import inputs as lep_inputs
from langshift.recipes.recipe import Recipe, Stage, StageContext
from langshift.tokenization.adaptation import build_tokenizer
from langshift.tokenization.extension import next_free_id
from langshift.tokenization.instruct_tokens import write_instruct_tokenizer
from langshift.tokenization.tokenizer_files import (
    read_tokenizer_config,
    read_tokenizer_json,
    write_tokenizer_dir,
)
from langshift.tokenization.vocabulary import vocabulary

# Generation settings of the instruct model that name token ids (remapped to the new vocabulary).
GENERATION_ID_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id")
# The tokenizer stage also reads, per source, these fields (`lep_inputs.corpus_texts`).
TOKENIZER_SOURCE_FIELDS = (
    "path",
    "format",
    "text_field",
    "text_unit",
    "tfds_name",
    "split",
    "data_dir",
)


def tokenizer_sources(config) -> dict[str, Any]:
  """The fields of each data source that the tokenizer stage reads (`Stage.inputs`)."""
  return {
      f"data.sources.{src.name}.{f}": src[f]
      for src in resolve_sources(config.data)
      for f in TOKENIZER_SOURCE_FIELDS
  }


def shared_stages_dir(config, workdir: str) -> str:
  """`<lep.shared_stages>/<fingerprint>`: the folder of the tokenizer, init and CPT stages of
  every run with these stages' inputs ("" when `lep.shared_stages` is unset). A relative
  `lep.shared_stages` is taken from the workdir (a sweep's "../lep_shared" is one folder beside
  its cells). Keyed by the fingerprint of all three stages' inputs, so a run whose CPT would
  differ never finds another's; the stage markers there are compared key by key all the same."""
  if not config.lep.shared_stages:
    return ""
  inputs = {s.name: RECIPE.stage_inputs(config, s.name) for s in RECIPE.stages if s.shareable}
  root = os.path.join(workdir, config.lep.shared_stages)
  return os.path.normpath(os.path.join(root, stages_lib.fingerprint(inputs)))


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


def make_tokenizer(ctx: StageContext) -> dict[str, Any]:
  """Stage: the target tokenizer (`build_target_tokenizer`)."""
  return build_target_tokenizer(ctx.config, ctx.paths["tokenizer"])


def make_base_init(ctx: StageContext) -> dict[str, Any]:
  """Stage: the base with new-vocabulary embeddings (`initialise_base`)."""
  lep = ctx.config.lep
  return initialise_base(
      lep.base, ctx.paths["tokenizer"], ctx.paths["init"], method=lep.init, seed=ctx.config.seed
  )


def continual_pretraining(ctx: StageContext) -> dict[str, Any]:
  """Stage: the experiment's own training run on base_init with the new tokenizer, embeddings
  only (the settings CPT needs are REQUIRED_SETTINGS, checked before any stage ran)."""
  cpt = training.training_config(
      ctx.config, init_from_hf=ctx.paths["init"], tokenizer=ctx.paths["tokenizer"]
  )
  return training.train_stage("cpt", cpt, ctx.paths["cpt"])


def propagate(ctx: StageContext) -> dict[str, Any]:
  """Stage: the instruct model with the donor's embeddings (`propagate_into_instruct`)."""
  lep = ctx.config.lep
  return propagate_into_instruct(
      lep.base,
      lep.instruct,
      ctx.paths,
      method=lep.propagation,
      product_dtype=lep.propagation_products,
  )


def chat_model(ctx: StageContext) -> str:
  """What the recipe hands on: calibrated/hf when calibrated, else lep_instruct/."""
  if ctx.config.lep.calibration.enabled:
    return os.path.join(ctx.paths["calibrate"], "hf")
  return ctx.paths["propagate"]


def evaluate(ctx: StageContext) -> dict[str, Any]:
  """Stage: the chat model on the benchmark suite (`evaluation.evaluate`)."""
  return evaluation.evaluate(ctx.config, chat_model(ctx), ctx.paths["evaluate"])


def _calibrated(config) -> bool:
  return bool(config.lep.calibration.enabled)


def _evaluated(config) -> bool:
  return bool(config.lep.evaluate.suite)


RECIPE = Recipe(
    name="lep",
    title="LEP",
    section="lep",
    section_config=lep_config_lib.lep_config,
    check=lep_config_lib.check_config,
    required_settings=lep_config_lib.REQUIRED_SETTINGS,
    required_inputs=lep_config_lib.required_inputs,
    shared_dir=shared_stages_dir,
    stages=(
        Stage(
            "tokenizer",
            "tokenizer_new",
            make_tokenizer,
            reads=(
                "lep.base",
                "lep.tokenizer_variant",
                "lep.new_vocab_size",
                "lep.max_new_tokens",
                "lep.shrink_to",
                "lep.tokenizer_max_texts",
                "data.on_bad_record",
            ),
            inputs=tokenizer_sources,
            shareable=True,
        ),
        Stage(
            "init",
            "base_init",
            make_base_init,
            reads=("lep.base", "lep.init", "seed"),
            shareable=True,
        ),
        # The experiment's own run (fingerprints.TRAINING_READS, `evals` included).
        Stage("cpt", "cpt", continual_pretraining, trains="", shareable=True),
        Stage(
            "propagate",
            "lep_instruct",
            propagate,
            reads=("lep.base", "lep.instruct", "lep.propagation", "lep.propagation_products"),
        ),
        Stage(
            "calibration_answers",
            "calibration_answers",
            calibration.generate_answers,
            reads=calibration.ANSWERS_READS,
            when=_calibrated,
            resumable=True,
        ),
        Stage(
            "calibrate",
            "calibrated",
            calibration.calibrate,
            reads=calibration.CALIBRATE_READS,
            trains=calibration.C + ".run",
            when=_calibrated,
        ),
        Stage("evaluate", "evaluate", evaluate, reads=evaluation.READS, when=_evaluated),
    ),
    export=chat_model,
    export_name="instruct model with the new vocabulary",
)
