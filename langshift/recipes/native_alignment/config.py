"""The native-alignment recipe's config section, `config.native_align`, and its checks."""

from __future__ import annotations

import os

import ml_collections

from langshift.data import config as data_config_lib
from langshift.evaluation.judge import JUDGE_MAX_NEW_TOKENS
from langshift.recipes import required_inputs as required_inputs_lib
from langshift.recipes import roles, training
from langshift.recipes.native_alignment import evaluation, polishing_policy

# The recipe's own sources in the student's CPT mix, beside the replay sources of config.data.
STUDENT_SOURCES = ("original", "rewritten")
FILTER_RULES = ("empty", "language", "length_ratio", "meta_text")
# Engine settings the recipe needs and the experiment file must state (checked, not overridden).
REQUIRED_SETTINGS = {"checkpoint.export_hf_at_end": True, "tokenizer": ""}


def native_align_config() -> ml_collections.ConfigDict:
  """The recipe's own config section, `config.native_align`."""
  return ml_collections.ConfigDict(
      dict(
          # The pre-training corpus to align (the `data` source schema: path, format, text_field).
          corpus=data_config_lib.source_config(path="", format="jsonl"),
          id_field="id",  # record field naming a document; absent: its position ("doc-00000042")
          language="ar",  # of the corpus: the policy's cultural paragraph and the language filter
          # The language's name in the policy's prompts and its readers' cultural norms (the
          # policy's "polish" rule). Empty: the built-in tables (polishing_policy.py), which know
          # ~20 languages; set language_name for any other one (language="el",
          # language_name="Greek"); without cultural_norms it gets the generic paragraph naming
          # the language.
          language_name="",
          cultural_norms="",
          max_documents=0,  # read at most this many documents (0: all); small runs
          dedup=dict(
              near=True,  # MinHash LSH near-duplicates besides exact (normalised-text) ones
              threshold=0.8,  # Jaccard similarity above which a later document is a duplicate
              num_perm=128,
              shingle=5,
              unit="word",  # word | char shingles
          ),
          policy="polish",  # polishing_policy.py
          seed_documents=96_000,  # the paper's seed sample for the expert
          expert=roles.role_config(backend="openai", max_new_tokens=2048, max_input_tokens=2048),
          filter=dict(rules=FILTER_RULES, min_ratio=0.5, max_ratio=1.5),
          # The worker's base model (the paper: Qwen1.5-4B-Chat), fine-tuned on the seed pairs.
          worker_init="",
          # The worker's SFT: a training run of its own (`training.run_config()`: train,
          # optimizer, model numerics, export dtype), nothing taken from the student's.
          worker_sft=training.run_config(
              model=dict(
                  dtype="bfloat16",
                  param_dtype="float32",
                  remat_policy="full",
                  scan_layers=True,
                  attention_impl="xla",
              ),
              export_dtype="bfloat16",
          ),
          # How the fine-tuned worker rewrites the corpus. backend=local runs worker_sft/hf here
          # (hf_dir is filled in by the recipe); backend=openai expects you to serve worker_sft/hf.
          worker=roles.role_config(
              backend="local",
              max_new_tokens=1536,
              max_input_tokens=1024,
              batch_size=64,
          ),
          # Apply `filter` to the worker's rewrites too (documents that fail are left out).
          filter_corpus_rewrites=True,
          # The student's CPT mix (`student_data`): the native-alignment text has weight
          # native_weight, split into rewritten (native_weight * rewritten_fraction) and original
          # (native_weight * (1 - rewritten_fraction)) text; replay sources in config.data.sources
          # (optional: general corpora) keep their own weights; the mixer normalises over the total.
          rewritten_fraction=0.5,  # share of rewritten text in the native-alignment text
          native_weight=1.0,
          upstream_workdir="",  # reuse the finished rewriting stages of this workdir
          evaluate=dict(
              # Local files in the published layouts (arabic_benchmarks.py).
              arabic_mmlu="",
              exams="",
              acva="",
              aratrust="",
              num_fewshot=5,
              max_examples=0,
              batch_size=8,
              # BeaverTails-style prompts judged pairwise (student after vs before CPT).
              safety_prompts="",
              max_judge_prompts=0,
              # The judge explains before its verdict: a budget that cuts the explanation loses
              # the verdict (langshift/evaluation/judge.py: JUDGE_MAX_NEW_TOKENS).
              judge=roles.role_config(backend="openai", max_new_tokens=JUDGE_MAX_NEW_TOKENS),
              answer_max_new_tokens=256,
          ),
      )
  )


def rewriting(config) -> bool:
  """Whether the rewriting stages run: not for the original-only baseline (fraction 0)."""
  return config.native_align.rewritten_fraction > 0


def check_config(config) -> None:
  """The recipe's own one-line errors, before any stage runs (the runner has checked that the
  section exists with known fields only, and the required engine settings)."""
  na, where = config.native_align, "config.native_align"
  if not 0 <= na.rewritten_fraction <= 1:
    raise ValueError(f"{where}.rewritten_fraction={na.rewritten_fraction}; expected in [0, 1]")
  if not na.native_weight > 0:
    raise ValueError(f"{where}.native_weight={na.native_weight}; expected > 0")
  if not na.upstream_workdir:
    data_config_lib.resolve_sources(ml_collections.ConfigDict({"sources": {"corpus": na.corpus}}))
  elif not os.path.isdir(os.path.join(na.upstream_workdir, "stages")):
    raise ValueError(f"{where}.upstream_workdir={na.upstream_workdir!r} has no finished stages")
  if rewriting(config) and not na.upstream_workdir:
    roles.check_role(na.expert, f"{where}.expert")
    roles.check_role(na.worker, f"{where}.worker", needs_weights=False)
    if na.worker.backend == "local" and na.worker.hf_dir:
      raise ValueError(
          f"{where}.worker.hf_dir is set by the recipe (worker_sft/hf) for a local "
          "worker; leave it empty"
      )
    if na.seed_documents <= 0:
      raise ValueError(f"{where}.seed_documents={na.seed_documents}; expected > 0")
    _check_worker_init(na.worker_init, f"{where}.worker_init")
    training.check_run_config(na.worker_sft, f"{where}.worker_sft")
    unknown = sorted(set(na.filter.rules) - set(FILTER_RULES))
    if unknown:
      raise ValueError(f"{where}.filter.rules: unknown {unknown}; known {FILTER_RULES}")
  polishing_policy.check_policy(na.policy, na.language, language_name=na.language_name)
  evaluation.check_evaluate_config(na.evaluate, f"{where}.evaluate")
  if not config.init_from_hf or not os.path.isdir(config.init_from_hf):
    raise ValueError(
        f"config.init_from_hf={config.init_from_hf!r}: give the student's local "
        "Hugging Face directory"
    )
  _check_replay_sources(config.data)


def _check_replay_sources(data) -> None:
  """The replay sources of the student's mix (`config.data.sources`, optional): the engine's
  source schema, the weighted mixer, names other than the recipe's own, files that exist."""
  if not len(data.sources):
    return
  from langshift.data.sources import expand_paths  # pylint: disable=import-outside-toplevel

  if data.mixer != "weighted":
    raise ValueError(
        f"config.data.mixer={data.mixer!r}: the native-alignment mix needs the 'weighted' mixer"
    )
  for src in data_config_lib.resolve_sources(data):
    where = f"config.data.sources.{src.name}"
    if src.name in STUDENT_SOURCES:
      raise ValueError(
          f"{where}: the name {src.name!r} is the recipe's own source in the student's mix "
          f"{STUDENT_SOURCES}; name the replay source otherwise"
      )
    if src.format != "tfds" and not expand_paths(src.path):
      raise ValueError(f"{where}.path={src.path!r} matches no files")


def _check_worker_init(path: str, where: str) -> None:
  if not path or not os.path.isdir(path):
    raise ValueError(f"{where}={path!r}: give the worker's local Hugging Face directory")
  from langshift.tokenization.tokenizer_metadata import read_tokenizer_metadata  # pylint: disable=import-outside-toplevel

  if not read_tokenizer_metadata(path).chat_template:
    raise ValueError(
        f"{where}={path!r}: the worker's tokenizer has no chat template "
        "(tokenizer_config.json or chat_template.jinja); it is fine-tuned and "
        "prompted through one"
    )


def required_inputs(config) -> list[str]:
  """The inputs a user must give this recipe that the config leaves empty (config keys);
  `langshift/recipes/required_inputs.py` adds the engine's data and evaluations."""
  na, where = config.native_align, "native_align"
  missing = [] if config.init_from_hf else ["init_from_hf"]
  if not na.upstream_workdir:
    if not na.corpus.path and na.corpus.get("format") != "tfds":
      missing.append(f"{where}.corpus.path")
    if na.rewritten_fraction > 0:
      if not na.worker_init:
        missing.append(f"{where}.worker_init")
      missing += required_inputs_lib.role_inputs(na.expert, f"{where}.expert")
  if na.evaluate.safety_prompts:
    missing += required_inputs_lib.role_inputs(na.evaluate.judge, f"{where}.evaluate.judge")
  return missing
