"""LEP's config section, `config.lep`, and its checks."""

from __future__ import annotations

import os

import ml_collections

from langshift.embeddings.initialization import INIT_METHODS
from langshift.embeddings.propagation import PROPAGATION_METHODS
from langshift.recipes.lep import calibration, evaluation
from langshift.tokenization.adaptation import VARIANTS

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
          # Optional: LoRA calibration of the propagated model (calibration.py).
          calibration=calibration.calibration_config(),
          # The last stage: the chat model on a benchmark suite, zero-shot (evaluation.py).
          evaluate=evaluation.evaluate_config(),
          # A folder for the tokenizer, init and CPT stages shared by runs that differ only in
          # later stages (propagation, calibration, evaluation): each set of those stages' inputs
          # gets a sub-folder named by their fingerprint, so the first run trains CPT and the
          # next ones reuse it. Relative to the workdir; "": every run has its own.
          shared_stages="",
      )
  )


def check_config(config) -> None:
  """The recipe's own one-line errors, before any stage runs (the runner has checked that the
  section exists with known fields only, and REQUIRED_SETTINGS)."""
  lep = config.lep
  for key in ("base", "instruct"):
    if not lep[key] or not os.path.isdir(lep[key]):
      raise ValueError(f"config.lep.{key}={lep[key]!r}: give a local Hugging Face model directory")
  for key, value, choices in (
      ("tokenizer_variant", lep.tokenizer_variant, VARIANTS),
      ("init", lep.init, INIT_METHODS),
      ("propagation", lep.propagation, PROPAGATION_METHODS),
      ("propagation_products", lep.propagation_products, ("float32", "float64")),
  ):
    if value not in choices:
      raise ValueError(f"config.lep.{key}={value!r}; expected one of {choices}")
  calibration.check_calibration_config(config)
  evaluation.check_evaluate_config(config)
  if lep.tokenizer_variant == "optimized" and not lep.shrink_to:
    raise ValueError("config.lep.tokenizer_variant='optimized' needs config.lep.shrink_to")


def required_inputs(config) -> list[str]:
  """The inputs a user must give this recipe that the config leaves empty (config keys);
  `langshift/recipes/required_inputs.py` adds the engine's data and evaluations."""
  lep = config.lep
  missing = [f"lep.{k}" for k in ("base", "instruct") if not lep[k]]
  if lep.calibration.enabled and not lep.calibration.prompts:
    missing.append("lep.calibration.prompts")
  if not lep.evaluate.data_dir and evaluation.reads_user_files(lep.evaluate):
    missing.append("lep.evaluate.data_dir")
  return missing
