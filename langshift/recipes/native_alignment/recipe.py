"""Native alignment end to end: the `native_align` recipe's stages.

Liang et al. 2024, "Alignment at Pre-training! Towards Native Alignment for Arabic LLMs"
(arXiv:2412.03253): align a model while it is pre-trained, by rewriting its pre-training corpus
under an alignment ("polishing") policy. An aligned expert rewrites a seed sample, a small worker
learns the rewriting from those pairs and rewrites the whole corpus, and the student continues
pre-training on a mix of rewritten and original text, and of any replay sources (general corpora)
in `config.data.sources` (`student_data`).

Seven resumable stages (`langshift/recipes/recipe.py`), each writing one folder of the workdir:

  dedup/           the corpus with exact and near duplicates removed (corpus.jsonl, removed.jsonl)
  seed_rewrite/    a seeded sample rewritten by the expert under the policy (rewrites.jsonl)
  seed_pairs/      the rewrites that pass the filters, as worker training pairs (pairs.jsonl)
  worker_sft/      the worker fine-tuned on (original -> rewrite), loss on the rewrite; hf/
  corpus_rewrite/  every deduplicated document rewritten by the worker (corpus.jsonl)
  cpt/             continual pre-training of the student on the mix; hf/ is the aligned student
  evaluate/        benchmark and judge results of the student before and after (metrics.json)

Settings are the `native_align` section (`config.py`); the student's training is the engine
config around it (`init_from_hf`, `train`, `optimizer`, `checkpoint.export_dtype`, `evals`), the
worker's its own run (`native_align.worker_sft`). Rewriting runs through the resumable generation
job: a killed run continues, every document rewritten exactly once. With `rewritten_fraction = 0`
(the original-only baseline) the rewriting stages do not run; `upstream_workdir` reuses another
workdir's finished dedup and rewriting stages (a sweep over the mix rewrites the corpus once).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
from jax.experimental import multihost_utils

from langshift.data import config as data_config_lib
from langshift.data.pipeline import derived_seed
from langshift.jsonl import read_jsonl, write_jsonl
from langshift.recipes import rewrite_io as rio
from langshift.recipes import roles, training
from langshift.recipes import stages as stages_lib
from langshift.recipes.native_alignment import config as na_config
from langshift.recipes.recipe import Recipe, Stage, StageContext

NA = "native_align"  # the config section


def deduplicate_corpus(ctx: StageContext) -> dict[str, Any]:
  """Stage 1: exact and MinHash-LSH near-duplicate removal, first occurrence kept."""
  from langshift.data.dedup import deduplicate  # pylint: disable=import-outside-toplevel

  config, out_dir = ctx.config, ctx.paths["dedup"]
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
  write_jsonl(os.path.join(out_dir, "corpus.jsonl"), kept)
  write_jsonl(
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
  from langshift.recipes.native_alignment.polishing_policy import policy_messages  # pylint: disable=import-outside-toplevel

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
  from langshift.recipes.native_alignment.polishing_policy import worker_messages  # pylint: disable=import-outside-toplevel

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
  }


def rewrite_seed_sample(ctx: StageContext) -> dict[str, Any]:
  """Stage 2: the expert rewrites a seeded sample, piece by piece (resumable job)."""
  from langshift.generation.job import read_outputs  # pylint: disable=import-outside-toplevel

  config, p = ctx.config, ctx.paths
  na, out = config.native_align, p["seed"]
  docs = read_jsonl(os.path.join(p["dedup"], "corpus.jsonl"))
  sample = rio.seeded_sample(docs, na.seed_documents, derived_seed(config.seed, "seed_sample"))
  requests = os.path.join(out, "requests.jsonl")
  pieces = write_jsonl(
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
  write_jsonl(
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
  from langshift.recipes.native_alignment.rewrite_filter import filter_rewrites  # pylint: disable=import-outside-toplevel

  f = na.filter
  return filter_rewrites(
      [(x["original"], x["rewrite"]) for x in pairs],
      language=na.language,
      min_ratio=f.min_ratio,
      max_ratio=f.max_ratio,
      rules=tuple(f.rules),
  )


def filter_seed_rewrites(ctx: StageContext) -> dict[str, Any]:
  """Stage 3: drop empty, wrong-language, badly sized and meta-text rewrites; write the rest as
  the worker's training pairs (prompt: the worker's instructions with the original piece)."""
  na, p = ctx.section, ctx.paths
  pieces = read_jsonl(os.path.join(p["seed"], "rewrites.jsonl"))
  result = _filter(na, pieces)
  worker_prompt = _worker_messages(na)
  kept = [pieces[i] for i in result.kept]
  write_jsonl(
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


def train_worker(ctx: StageContext) -> dict[str, Any]:
  """Stage 4: SFT of the worker on (original -> rewrite), loss on the rewrite (the assistant
  turn of the worker's own chat template): the run `native_align.worker_sft` from `worker_init`."""
  na, p = ctx.section, ctx.paths
  pairs = os.path.join(p["filter"], "pairs.jsonl")
  data = data_config_lib.default_data_config()
  data.sources.pairs = data_config_lib.source_config(path=pairs, format="jsonl", template="pair")
  data.packing = "greedy"
  too_long = _pairs_over_length(pairs, na.worker_init, na.worker_sft.train.seq_len)
  sft = training.training_config(
      ctx.config, run=na.worker_sft, init_from_hf=na.worker_init, data=data
  )
  return {
      **training.train_stage("worker_sft", sft, p["worker_sft"]),
      "pairs_over_seq_len": too_long,
  }


def _pairs_over_length(path: str, tokenizer_dir: str, seq_len: int) -> int:
  """How many pairs do not fit one training row; an error when none does (the rows would hold
  prompt pieces only, and the worker would train on no rewrite tokens at all)."""
  from langshift.tokenization.tokenizer import load_tokenizer  # pylint: disable=import-outside-toplevel

  tokenizer = load_tokenizer(tokenizer_dir)
  pairs = read_jsonl(path)
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


def rewrite_corpus(ctx: StageContext) -> dict[str, Any]:
  """Stage 5: the worker rewrites every deduplicated document; each process of a multi-host job
  rewrites its own share (round-robin shards of the requests) with its own replica."""
  from langshift.generation.job import read_outputs  # pylint: disable=import-outside-toplevel

  config, p = ctx.config, ctx.paths
  na, out = config.native_align, p["rewrite"]
  role = _worker_role(na, p)
  docs = read_jsonl(os.path.join(p["dedup"], "corpus.jsonl"))
  requests = os.path.join(out, "requests.jsonl")
  lead, hosts = jax.process_index() == 0, jax.process_count()
  if lead:
    write_jsonl(
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
  summary["kept"] = write_jsonl(
      os.path.join(out, "corpus.jsonl"),
      ({"id": i, "text": joined[i]["text"], "rewriter": roles.role_name(role)} for i in ids),
  )
  return summary


def student_data(config, paths: dict[str, str]) -> ml_collections.ConfigDict:
  """The student's CPT data: original and rewritten text (weights native_weight * (1 - f) and
  native_weight * f) and the replay sources of `config.data.sources` with their own weights; the
  weighted mixer normalises over the total. `paths`: the stages' folders (`RECIPE.paths`; the
  upstream workdir's for reused stages).

  Liang et al. 2024 (arXiv:2412.03253) pre-train on the rewritten Arabic corpus mixed with
  general corpora (their pre-training data: SlimPajama, MAP-CC, Proof-Pile-2, Wikipedia); replay
  sources are where such corpora go.
  """
  na = config.native_align
  f, w = na.rewritten_fraction, na.native_weight
  data = config.copy_and_resolve_references().data
  replay = data_config_lib.resolve_sources(data) if len(data.sources) else []
  mix = {
      "original": (os.path.join(paths["dedup"], "corpus.jsonl"), w * (1.0 - f)),
      "rewritten": (os.path.join(paths["rewrite"], "corpus.jsonl"), w * f),
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


def continual_pretraining(ctx: StageContext) -> dict[str, Any]:
  """Stage 6: the student trains on original and rewritten text, and any replay sources, in the
  configured mix (`student_data`): the experiment's own training run (its `evals` before and
  after, its export dtype)."""
  cpt = training.training_config(ctx.config, data=student_data(ctx.config, ctx.paths))
  return training.train_stage("cpt", cpt, ctx.paths["cpt"])


def evaluate_student(ctx: StageContext) -> dict[str, Any]:
  """Stage 7: Arabic benchmarks (files the user supplies) and the pairwise safety judge, for
  the student before (init_from_hf) and after CPT; held-out perplexity and the offline suite
  ran inside CPT (`config.evals`) and are in its summary."""
  from langshift.recipes.native_alignment import evaluation  # pylint: disable=import-outside-toplevel

  config, out_dir = ctx.config, ctx.paths["evaluate"]
  metrics = evaluation.evaluate(
      config,
      before=config.init_from_hf,
      after=os.path.join(ctx.paths["cpt"], "hf"),
      out_dir=out_dir,
  )
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "metrics.json"), "w") as f:
    json.dump(metrics, f, indent=1, sort_keys=True)
  return metrics


# The rewriting stages: none under rewritten_fraction=0; read from `upstream_workdir` when set.
_REWRITING = dict(
    when=na_config.rewriting,
    skip_note="rewritten_fraction=0 (original only): no rewriting stages",
    upstream=True,
)
# The worker's prompts (its SFT pairs, its corpus requests) name the language.
_LANGUAGE = (f"{NA}.policy", f"{NA}.language", f"{NA}.language_name")

RECIPE = Recipe(
    name="native_align",
    title="native alignment",
    section=NA,
    section_config=na_config.native_align_config,
    check=na_config.check_config,
    required_settings=na_config.REQUIRED_SETTINGS,
    required_inputs=na_config.required_inputs,
    upstream=lambda config: config.native_align.upstream_workdir,
    stages=(
        Stage(
            "dedup",
            "dedup",
            deduplicate_corpus,
            reads=(
                f"{NA}.corpus",
                f"{NA}.id_field",
                f"{NA}.max_documents",
                f"{NA}.dedup",
                "data.on_bad_record",
            ),
            upstream=True,
        ),
        Stage(
            "seed",
            "seed_rewrite",
            rewrite_seed_sample,
            reads=(
                f"{NA}.seed_documents",
                *_LANGUAGE,
                f"{NA}.cultural_norms",
                f"{NA}.expert",
                "seed",
            ),
            resumable=True,
            **_REWRITING,
        ),
        Stage(
            "filter",
            "seed_pairs",
            filter_seed_rewrites,
            reads=(f"{NA}.filter", *_LANGUAGE),
            **_REWRITING,
        ),
        Stage(
            "worker_sft",
            "worker_sft",
            train_worker,
            reads=(f"{NA}.worker_init",),
            trains=f"{NA}.worker_sft",
            **_REWRITING,
        ),
        Stage(
            "rewrite",
            "corpus_rewrite",
            rewrite_corpus,
            reads=(
                f"{NA}.worker",
                *_LANGUAGE,
                f"{NA}.filter_corpus_rewrites",
                f"{NA}.filter",
            ),
            resumable=True,
            collective=True,
            **_REWRITING,
        ),
        Stage(
            "cpt",
            "cpt",
            continual_pretraining,
            reads=(f"{NA}.rewritten_fraction", f"{NA}.native_weight"),
            trains="",
        ),
        Stage(
            "evaluate", "evaluate", evaluate_student, reads=(f"{NA}.evaluate", "data.chat_template")
        ),
    ),
    export=lambda ctx: os.path.join(ctx.paths["cpt"], "hf"),
    export_name="aligned student",
)
