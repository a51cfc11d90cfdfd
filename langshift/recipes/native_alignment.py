"""Native alignment end to end: `run_native_alignment(config, workdir)`.

Liang et al. 2024, "Alignment at Pre-training! Towards Native Alignment for Arabic LLMs"
(arXiv:2412.03253): align a model while it is pre-trained, by rewriting its pre-training corpus
under an alignment ("polishing") policy. An aligned expert rewrites a seed sample, a small worker
learns the rewriting from those pairs and rewrites the whole corpus, and the student continues
pre-training on a mix of rewritten and original text, and of any replay sources (general corpora)
in `config.data.sources` (`student_data`).

One config, seven resumable stages (`stages.py`), each writing one folder of the workdir:

  dedup/           the corpus with exact and near duplicates removed (corpus.jsonl, removed.jsonl)
  seed_rewrite/    a seeded sample rewritten by the expert under the policy (rewrites.jsonl)
  seed_pairs/      the rewrites that pass the filters, as worker training pairs (pairs.jsonl)
  worker_sft/      the worker fine-tuned on (original -> rewrite), loss on the rewrite; hf/
  corpus_rewrite/  every deduplicated document rewritten by the worker (corpus.jsonl)
  cpt/             continual pre-training of the student on the mix; hf/ is the aligned student
  evaluate/        benchmark and judge results of the student before and after (metrics.json)

Settings are the `native_align` section (`native_align_config()`); the student's training is the
engine config around it (`init_from_hf`, `train`, `optimizer`, `evals`). Rewriting runs through
the resumable generation job: a killed run continues, every document rewritten exactly once.
With `rewritten_fraction = 0` (the original-only baseline) the rewriting stages are not needed
and are skipped; `upstream_workdir` reuses another workdir's finished rewriting stages (a sweep
over the mix rewrites the corpus once).
"""

from __future__ import annotations

import json
import os
import resource
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
from jax.experimental import multihost_utils

from langshift import config_lib
from langshift.data import config as data_config_lib
from langshift.data.pipeline import derived_seed
from langshift.evaluation.judge import JUDGE_MAX_NEW_TOKENS
from langshift.recipes import rewrite_io as rio
from langshift.recipes import roles
from langshift.recipes import stages as stages_lib
from langshift.recipes.stages import StageInterrupted, StageRunner

STAGE_DIRS = dict(
    dedup="dedup",
    seed="seed_rewrite",
    filter="seed_pairs",
    worker_sft="worker_sft",
    rewrite="corpus_rewrite",
    cpt="cpt",
    evaluate="evaluate",
)
REWRITING_STAGES = ("seed", "filter", "worker_sft", "rewrite")
# The recipe's own sources in the student's CPT mix, beside the replay sources of config.data.
STUDENT_SOURCES = ("original", "rewritten")
FILTER_RULES = ("empty", "language", "length_ratio", "meta_text")


def native_align_config() -> ml_collections.ConfigDict:
  """The recipe's own config section, `config.native_align`."""
  base = _engine_defaults()
  return ml_collections.ConfigDict(
      dict(
          # The pre-training corpus to align (the `data` source schema: path, format, text_field).
          corpus=data_config_lib.source_config(path="", format="jsonl"),
          id_field="id",  # record field naming a document; absent: its position ("doc-00000042")
          language="ar",  # of the corpus: the policy's cultural paragraph and the language filter
          # The language's name in the policy's prompts and its readers' cultural norms (the
          # policy's "polish" rule). Empty: the built-in tables (langshift/recipes/
          # polishing_policy.py), which know ~20 languages; set language_name for any other one
          # (language="el", language_name="Greek"); without cultural_norms it gets the generic
          # paragraph naming the language.
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
          policy="polish",  # langshift/recipes/polishing_policy.py
          seed_documents=96_000,  # the paper's seed sample for the expert
          expert=roles.role_config(backend="openai", max_new_tokens=2048, max_input_tokens=2048),
          filter=dict(rules=FILTER_RULES, min_ratio=0.5, max_ratio=1.5),
          # The worker's base model (the paper: Qwen1.5-4B-Chat), fine-tuned on the seed pairs.
          worker_init="",
          worker_sft=dict(
              train=base.train,
              optimizer=base.optimizer,
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
              # Local files in the published layouts (langshift/evaluation/arabic_benchmarks.py).
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


def _engine_defaults():
  from langshift.train.config import base_config  # pylint: disable=import-outside-toplevel

  return base_config()


# Engine settings the recipe needs and the experiment file must state (checked, not overridden).
REQUIRED_SETTINGS = {"checkpoint.export_hf_at_end": True, "tokenizer": ""}


def paths(workdir: str) -> dict[str, str]:
  return {name: os.path.join(workdir, d) for name, d in STAGE_DIRS.items()}


def stage_inputs(config, stage: str) -> dict[str, Any]:
  """Every config value stage `stage` reads: its fingerprint in the stage marker."""
  na = "native_align"
  keys = {
      "dedup": [
          f"{na}.corpus",
          f"{na}.id_field",
          f"{na}.max_documents",
          f"{na}.dedup",
          "data.on_bad_record",
      ],
      "seed": [
          f"{na}.seed_documents",
          f"{na}.policy",
          f"{na}.language",
          f"{na}.language_name",
          f"{na}.cultural_norms",
          f"{na}.expert",
          "seed",
      ],
      # The worker's prompts (its SFT pairs, its corpus requests) name the language.
      "filter": [f"{na}.filter", f"{na}.language", f"{na}.language_name", f"{na}.policy"],
      "worker_sft": [f"{na}.worker_init", f"{na}.worker_sft", "seed"],
      "rewrite": [
          f"{na}.worker",
          f"{na}.policy",
          f"{na}.language",
          f"{na}.language_name",
          f"{na}.filter_corpus_rewrites",
          f"{na}.filter",
      ],
      "cpt": [
          "seed",
          "init_from_hf",
          "model",
          "data",  # the replay sources
          "train",
          "optimizer",
          f"{na}.rewritten_fraction",
          f"{na}.native_weight",
      ],
      "evaluate": [f"{na}.evaluate", "data.chat_template"],
  }[stage]
  return roles.stage_inputs(config, keys)


@stages_lib.stoppable
def run_native_alignment(
    config: ml_collections.ConfigDict, workdir: str, *, log: Callable[[str], None] = print
) -> dict[str, Any]:
  """Runs (or continues) every stage; returns {'status', 'stages', 'export'}."""
  check_native_align_config(config)
  na, p = config.native_align, paths(workdir)
  runner = stages_lib.recipe_runner(config, workdir, log, STAGE_DIRS)
  upstream = StageRunner(na.upstream_workdir, log=log) if na.upstream_workdir else None
  up = paths(na.upstream_workdir) if upstream else p
  stages: dict[str, Any] = {}

  def run(name, body, *, source=None, **kwargs):
    inputs = stage_inputs(config, name)
    if source is not None:
      summary = runner.reached(name, source.recorded(name, inputs))
    else:
      summary = runner.run(name, p[name], body, inputs=inputs, **kwargs)
    stages[name] = summary
    runner.log(f"langshift: stage {name}: {stages_lib.format_counts(summary)}")
    return summary

  run("dedup", lambda: deduplicate_corpus(config, p["dedup"]), source=upstream)
  if na.rewritten_fraction > 0:
    run("seed", lambda: rewrite_seed_sample(config, up), source=upstream, clear_partial=False)
    run("filter", lambda: filter_seed_rewrites(config, up), source=upstream)
    try:
      run(
          "worker_sft",
          lambda: train_worker(config, up),
          source=upstream,
          clear_partial=False,
          collective=True,
      )
    except StageInterrupted as e:
      return _interrupted(runner, stages, "worker_sft", e)
    run(
        "rewrite",
        lambda: rewrite_corpus(config, up),
        source=upstream,
        clear_partial=False,
        collective=True,
    )
  else:
    runner.log("langshift: rewritten_fraction=0 (original only): no rewriting stages")
  try:
    run("cpt", lambda: continual_pretraining(config, up, p), clear_partial=False, collective=True)
  except StageInterrupted as e:
    return _interrupted(runner, stages, "cpt", e)
  run("evaluate", lambda: evaluate_student(config, p))
  export = os.path.join(p["cpt"], "hf")
  runner.log(f"langshift: native alignment done; aligned student: {export}")
  return {"status": "done", "stages": stages, "export": export}


def _interrupted(runner, stages, name, e):
  runner.log(f"langshift: stopped during {name}; rerun the same command to continue")
  stages[name] = e.summary
  return {"status": "preempted", "stages": stages, "export": None}


def check_native_align_config(config) -> None:
  """One-line errors, before any stage runs."""
  if "native_align" not in config:
    raise ValueError(
        "config.recipe='native_align' needs a config.native_align section: "
        "config.native_align = langshift.recipes.native_alignment."
        "native_align_config()"
    )
  na, where = config.native_align, "config.native_align"
  config_lib.check_fields(dict(na), native_align_config(), where)
  if not 0 <= na.rewritten_fraction <= 1:
    raise ValueError(f"{where}.rewritten_fraction={na.rewritten_fraction}; expected in [0, 1]")
  if not na.native_weight > 0:
    raise ValueError(f"{where}.native_weight={na.native_weight}; expected > 0")
  rewriting = na.rewritten_fraction > 0 and not na.upstream_workdir
  if not na.upstream_workdir:
    data_config_lib.resolve_sources(ml_collections.ConfigDict({"sources": {"corpus": na.corpus}}))
  elif not os.path.isdir(os.path.join(na.upstream_workdir, "stages")):
    raise ValueError(f"{where}.upstream_workdir={na.upstream_workdir!r} has no finished stages")
  if rewriting:
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
    unknown = sorted(set(na.filter.rules) - set(FILTER_RULES))
    if unknown:
      raise ValueError(f"{where}.filter.rules: unknown {unknown}; known {FILTER_RULES}")
  # pylint: disable=import-outside-toplevel
  from langshift.recipes import native_alignment_eval, polishing_policy

  polishing_policy.check_policy(na.policy, na.language, language_name=na.language_name)
  native_alignment_eval.check_evaluate_config(na.evaluate, f"{where}.evaluate")
  if not config.init_from_hf or not os.path.isdir(config.init_from_hf):
    raise ValueError(
        f"config.init_from_hf={config.init_from_hf!r}: give the student's local "
        "Hugging Face directory"
    )
  _check_replay_sources(config.data)
  flat = config_lib.flatten(config)
  for key, required in REQUIRED_SETTINGS.items():
    if flat[key] != required:
      raise ValueError(
          f"config.{key}={flat[key]!r} contradicts the native-alignment recipe, "
          f"which needs {required!r}"
      )


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


# --- Stages ---------------------------------------------------------------------------------


def deduplicate_corpus(config, out_dir: str) -> dict[str, Any]:
  """Stage 1: exact and MinHash-LSH near-duplicate removal, first occurrence kept."""
  from langshift.data.dedup import deduplicate  # pylint: disable=import-outside-toplevel

  na = config.native_align
  src = data_config_lib.resolve_sources(
      ml_collections.ConfigDict({"sources": {"corpus": na.corpus}})
  )[0]
  docs = rio.read_documents(
      src, id_field=na.id_field, on_bad_record=config.data.on_bad_record, limit=na.max_documents
  )
  if not docs:
    raise ValueError(f"config.native_align.corpus: {na.corpus.path} holds no documents")
  d = na.dedup
  result = deduplicate(
      [doc["text"] for doc in docs],
      threshold=d.threshold,
      num_perm=d.num_perm,
      shingle=d.shingle,
      unit=d.unit,
      near=d.near,
  )
  kept = [docs[i] for i in result.kept]
  rio.write_jsonl(os.path.join(out_dir, "corpus.jsonl"), kept)
  rio.write_jsonl(
      os.path.join(out_dir, "removed.jsonl"),
      (
          {"id": docs[i]["id"], "duplicate_of": docs[j]["id"], "reason": reason}
          for i, (j, reason) in sorted(result.removed.items())
      ),
  )
  return dict(
      documents=len(docs),
      kept=len(kept),
      exact_removed=result.exact_removed,
      near_removed=result.near_removed,
  )


def _expert_messages(na) -> Callable[[str], list[dict]]:
  from langshift.recipes.polishing_policy import policy_messages  # pylint: disable=import-outside-toplevel

  return lambda text: policy_messages(
      text,
      policy=na.policy,
      language=na.language,
      system=na.expert.system_prompt,
      language_name=na.language_name,
      norms=na.cultural_norms,
  )


def _worker_messages(na) -> Callable[[str], list[dict]]:
  """The worker's short prompt, the same in its SFT pairs and when it rewrites the corpus."""
  from langshift.recipes.polishing_policy import worker_messages  # pylint: disable=import-outside-toplevel

  return lambda text: worker_messages(
      text, policy=na.policy, language=na.language, language_name=na.language_name
  )


def _run_job(
    requests_path,
    out_dir,
    generator,
    role,
    seed,
    *,
    stage,
    worker_index=0,
    num_workers=1,
    barrier=lambda: None,
) -> dict[str, float]:
  """Runs (or resumes) the generation job; returns this call's throughput (documents and
  generated tokens per second, counted on the records this call wrote — by every host — and peak
  memory). Requests that failed stop the stage: they are recorded and the rerun retries them."""
  new, seconds = roles.run_job(
      requests_path,
      out_dir,
      generator,
      role,
      seed,
      stage=stage,  # LANGSHIFT_FAULT=kill@rewrite_records=N in tests
      output_field="rewrite",
      worker_index=worker_index,
      num_workers=num_workers,
      barrier=barrier,
  )
  length = roles.length_fn(role)
  tokens = sum(length(o["rewrite"]) for o in new)
  docs = len({o["doc_id"] for o in new if int(o["piece"]) == int(o["pieces"]) - 1})
  return {
      f"{stage}_seconds": seconds,
      f"{stage}_pieces": len(new),
      f"{stage}_generated_tokens": tokens,
      f"{stage}_documents_per_s": docs / seconds if seconds else 0.0,
      f"{stage}_tokens_per_s": tokens / seconds if seconds else 0.0,
      # ru_maxrss is in KiB on Linux: the process's peak, model and decode buffers included.
      "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
  }


def rewrite_seed_sample(config, p: dict[str, str]) -> dict[str, Any]:
  """Stage 2: the expert rewrites a seeded sample, piece by piece (resumable job)."""
  from langshift.generation.job import read_outputs  # pylint: disable=import-outside-toplevel

  na, out = config.native_align, p["seed"]
  docs = rio.read_jsonl(os.path.join(p["dedup"], "corpus.jsonl"))
  sample = rio.seeded_sample(docs, na.seed_documents, derived_seed(config.seed, "seed_sample"))
  requests = os.path.join(out, "requests.jsonl")
  pieces = rio.write_jsonl(
      requests,
      rio.rewrite_requests(
          sample,
          budget=na.expert.max_input_tokens,
          length=roles.length_fn(na.expert),
          messages=_expert_messages(na),
      ),
  )
  throughput = _run_job(
      requests,
      os.path.join(out, "outputs"),
      roles.make_generator(na.expert),
      na.expert,
      derived_seed(config.seed, "seed_rewrite"),
      stage="seed",
  )
  outputs = read_outputs(os.path.join(out, "outputs"))
  rio.write_jsonl(
      os.path.join(out, "rewrites.jsonl"),
      ({k: o[k] for k in ("id", "doc_id", "piece", "original", "rewrite")} for o in outputs),
  )
  return dict(
      documents=len(sample),
      pieces=pieces,
      rewritten=len(outputs),
      rewriter=roles.role_name(na.expert),
      **throughput,
  )


def _filter(na, pairs):
  from langshift.data.rewrite_filter import filter_rewrites  # pylint: disable=import-outside-toplevel

  f = na.filter
  return filter_rewrites(
      [(x["original"], x["rewrite"]) for x in pairs],
      language=na.language,
      min_ratio=f.min_ratio,
      max_ratio=f.max_ratio,
      rules=tuple(f.rules),
  )


def filter_seed_rewrites(config, p: dict[str, str]) -> dict[str, Any]:
  """Stage 3: drop empty, wrong-language, badly sized and meta-text rewrites; write the rest as
  the worker's training pairs (prompt: the worker's instructions with the original piece)."""
  na = config.native_align
  pieces = rio.read_jsonl(os.path.join(p["seed"], "rewrites.jsonl"))
  result = _filter(na, pieces)
  worker_prompt = _worker_messages(na)
  kept = [pieces[i] for i in result.kept]
  rio.write_jsonl(
      os.path.join(p["filter"], "pairs.jsonl"),
      (
          {
              "id": x["id"],
              "prompt": worker_prompt(x["original"])[0]["content"],
              "response": x["rewrite"].strip(),
          }
          for x in kept
      ),
  )
  summary = dict(pieces=len(pieces), **result.counts)
  if not kept:
    raise ValueError(
        f"stage filter: none of the {len(pieces)} rewritten seed pieces passed the filters "
        f"({stages_lib.format_counts(result.counts)}); see {p['seed']}/rewrites.jsonl"
    )
  return summary


def _sub_config(config, *, init_from_hf, data, train, optimizer, model, export_dtype):
  """An engine config for one of the recipe's training runs (the worker's SFT)."""
  sub = config.copy_and_resolve_references()
  with sub.unlocked():
    sub.recipe = "cpt"
    sub.init_from_hf = init_from_hf
    sub.data = data
    sub.train = ml_collections.ConfigDict(train.to_dict())
    sub.optimizer = ml_collections.ConfigDict(optimizer.to_dict())
    sub.model.update(model.to_dict())
    sub.checkpoint.update(export_hf_at_end=True, export_dtype=export_dtype)
    sub.evals = ml_collections.ConfigDict()
  return sub


def train_worker(config, p: dict[str, str]) -> dict[str, Any]:
  """Stage 4: SFT of the worker on (original -> rewrite), loss on the rewrite (the assistant
  turn of the worker's own chat template)."""
  from langshift.train.trainer import train_and_evaluate  # pylint: disable=import-outside-toplevel

  na = config.native_align
  data = data_config_lib.default_data_config()
  data.sources.pairs = data_config_lib.source_config(
      path=os.path.join(p["filter"], "pairs.jsonl"), format="jsonl", template="pair"
  )
  data.packing = "greedy"
  too_long = _pairs_over_length(
      os.path.join(p["filter"], "pairs.jsonl"), na.worker_init, na.worker_sft.train.seq_len
  )
  sft = _sub_config(
      config,
      init_from_hf=na.worker_init,
      data=data,
      train=na.worker_sft.train,
      optimizer=na.worker_sft.optimizer,
      model=na.worker_sft.model,
      export_dtype=na.worker_sft.export_dtype,
  )
  summary = train_and_evaluate(sft, p["worker_sft"])
  if summary.get("stop_reason") == "preempted":
    raise StageInterrupted("worker_sft", summary)
  return {**summary, "pairs_over_seq_len": too_long}


def _pairs_over_length(path: str, tokenizer_dir: str, seq_len: int) -> int:
  """How many pairs do not fit one training row; an error when none does (the rows would hold
  prompt pieces only, and the worker would train on no rewrite tokens at all)."""
  from langshift.tokenization.tokenizer import load_tokenizer  # pylint: disable=import-outside-toplevel

  tokenizer = load_tokenizer(tokenizer_dir)
  pairs = rio.read_jsonl(path)
  # The chat template adds a few header tokens around each turn; 16 covers the families here.
  lengths = [
      len(tokenizer.encode(x["prompt"])) + len(tokenizer.encode(x["response"])) + 16 for x in pairs
  ]
  over = sum(n > seq_len for n in lengths)
  if over == len(pairs):
    raise ValueError(
        f"config.native_align.worker_sft.train.seq_len={seq_len} is shorter than every seed "
        f"pair (shortest ~{min(lengths)} tokens): raise it, or lower the pieces' "
        "native_align.expert.max_input_tokens"
    )
  return over


def _worker_role(na, p):
  role = ml_collections.ConfigDict(na.worker.to_dict())
  if role.backend == "local" or not role.hf_dir:
    role.hf_dir = os.path.join(p["worker_sft"], "hf")
  return role


def rewrite_corpus(config, p: dict[str, str]) -> dict[str, Any]:
  """Stage 5: the worker rewrites every deduplicated document; each process of a multi-host job
  rewrites its own share (round-robin shards of the requests) with its own replica."""
  from langshift.generation.job import read_outputs  # pylint: disable=import-outside-toplevel

  na, out = config.native_align, p["rewrite"]
  role = _worker_role(na, p)
  docs = rio.read_jsonl(os.path.join(p["dedup"], "corpus.jsonl"))
  requests = os.path.join(out, "requests.jsonl")
  lead, hosts = jax.process_index() == 0, jax.process_count()
  if lead:
    rio.write_jsonl(
        requests,
        rio.rewrite_requests(
            docs,
            budget=role.max_input_tokens,
            length=roles.length_fn(role),
            messages=_worker_messages(na),
        ),
    )
  if hosts > 1:
    multihost_utils.sync_global_devices("langshift native_align requests")

  def barrier():  # every host's share is written before anyone reads the outputs
    if hosts > 1:
      multihost_utils.sync_global_devices("langshift native_align rewrites")

  throughput = _run_job(
      requests,
      os.path.join(out, "outputs"),
      roles.make_generator(role, rules=config.logical_rules, num_devices=config.mesh.num_devices),
      role,
      derived_seed(config.seed, "corpus_rewrite"),
      stage="rewrite",
      worker_index=jax.process_index(),
      num_workers=hosts,
      barrier=barrier,
  )
  if not lead:
    return {}
  joined = rio.join_rewrites(read_outputs(os.path.join(out, "outputs")), "rewrite")
  summary = dict(
      documents=len(docs), rewritten=len(joined), missing=len(docs) - len(joined), **throughput
  )
  ids = [d["id"] for d in docs if d["id"] in joined]
  if na.filter_corpus_rewrites:
    result = _filter(na, [joined[i] | {"rewrite": joined[i]["text"]} for i in ids])
    summary.update({f"filter_{k}": v for k, v in result.counts.items()})
    ids = [ids[k] for k in result.kept]
  if not ids:
    raise ValueError(
        f"stage rewrite: no rewritten document is left ({stages_lib.format_counts(summary)}); the "
        "student would train on original text only (set rewritten_fraction=0)"
    )
  summary["kept"] = rio.write_jsonl(
      os.path.join(out, "corpus.jsonl"),
      ({"id": i, "text": joined[i]["text"], "rewriter": roles.role_name(role)} for i in ids),
  )
  return summary


def student_data(config, up: dict[str, str]) -> ml_collections.ConfigDict:
  """The student's CPT data: original and rewritten text (weights native_weight * (1 - f) and
  native_weight * f) and the replay sources of `config.data.sources` with their own weights; the
  weighted mixer normalises over the total.

  Liang et al. 2024 (arXiv:2412.03253) pre-train on the rewritten Arabic corpus mixed with
  general corpora (their pre-training data: SlimPajama, MAP-CC, Proof-Pile-2, Wikipedia); replay
  sources are where such corpora go.
  """
  na = config.native_align
  f, w = na.rewritten_fraction, na.native_weight
  data = config.copy_and_resolve_references().data
  replay = data_config_lib.resolve_sources(data) if len(data.sources) else []
  mix = {
      "original": (os.path.join(up["dedup"], "corpus.jsonl"), w * (1.0 - f)),
      "rewritten": (os.path.join(up["rewrite"], "corpus.jsonl"), w * f),
  }
  sources = ml_collections.ConfigDict()
  for name, (path, weight) in mix.items():
    if weight > 0:  # a weight of 0 leaves the source out (the pipeline needs weights > 0)
      sources[name] = data_config_lib.source_config(path=path, format="jsonl", weight=weight)
  for src in replay:
    sources[src.name] = src
  with data.unlocked():
    data.sources = sources
  return data


def continual_pretraining(config, up: dict[str, str], p: dict[str, str]) -> dict[str, Any]:
  """Stage 6: the student trains on original and rewritten text, and any replay sources, in the
  configured mix (`student_data`)."""
  from langshift.train.trainer import train_and_evaluate  # pylint: disable=import-outside-toplevel

  cpt = config.copy_and_resolve_references()
  with cpt.unlocked():
    cpt.recipe = "cpt"
    cpt.data = student_data(config, up)
  summary = train_and_evaluate(cpt, p["cpt"])
  if summary.get("stop_reason") == "preempted":
    raise StageInterrupted("cpt", summary)
  return summary


def evaluate_student(config, p: dict[str, str]) -> dict[str, Any]:
  """Stage 7: Arabic benchmarks (files the user supplies) and the pairwise safety judge, for
  the student before (init_from_hf) and after CPT; held-out perplexity and the offline suite
  ran inside CPT (`config.evals`) and are in its summary."""
  from langshift.recipes import native_alignment_eval  # pylint: disable=import-outside-toplevel

  metrics = native_alignment_eval.evaluate(
      config, before=config.init_from_hf, after=os.path.join(p["cpt"], "hf"), out_dir=p["evaluate"]
  )
  os.makedirs(p["evaluate"], exist_ok=True)
  with open(os.path.join(p["evaluate"], "metrics.json"), "w") as f:
    json.dump(metrics, f, indent=1, sort_keys=True)
  return metrics
