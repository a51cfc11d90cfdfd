"""Non-instructional fine-tuning end to end: the `noninstruct` recipe's stages.

Xie, Syu & Lee 2024, "Non-instructional Fine-tuning: Enabling Instruction-Following Capabilities
in Pre-trained Language Models without Instruction-Following Data" (arXiv:2409.00096, Sec. 3):
ordinary documents are split at their midpoint, a teacher continues the first half, and the
student is fine-tuned on (user: first half -> assistant: continuation), loss on the assistant span.

Six resumable stages (`langshift/recipes/recipe.py`), each writing one folder of the workdir:

  split/      each document cut at its middle unit (requests.jsonl: the teacher's conversations)
  teacher/    the teacher's continuations (outputs/: the resumable, exactly-once generation job)
  pairs/      (first half, continuation) records for the pair template (pairs.jsonl)
  sft/        the student fine-tuned on the pairs, LoRA or full (`train.trainable`); hf/ is the
              merged model, hf_adapter/ the PEFT adapter of a LoRA run
  export/     what the run produced and its sizes (summary.json: trainable parameters and
              optimizer-state bytes)
  evaluate/   the judge-free proxies before and after SFT (and the Open LLM suite's lm-eval
              tasks, an `lm_eval_tasks` entry of `config.evals` in the published setting); with
              a judge, pairwise judging of the tuned student against the untuned one
              (metrics.json, judged.jsonl); with the published files, the paper's MT-Bench and
              Arena-Hard of the tuned student (`mt_bench/...`, `arena_hard/...`)

Settings are the `noninstruct` section (`config.py`); the student's training is the engine
config around it (`init_from_hf`, `train`, `optimizer`, `data.chat_template`, `evals`).
`mode="response_tuning"` is the close baseline of Hewitt et al. 2024 ("Instruction Following
without Instruction Tuning", arXiv:2409.14254, Sec. 3): records' responses behind an empty
instruction, loss on the response, and no teacher.
"""

from __future__ import annotations

import json
import os
from typing import Any

import ml_collections

from langshift.data import config as data_config_lib
from langshift.data.pipeline import derived_seed
from langshift.jsonl import read_jsonl, write_jsonl
from langshift.recipes import judged_benchmarks, judging, roles, training
from langshift.recipes import rewrite_io as rio
from langshift.recipes.non_instructional import config as ni_config
from langshift.recipes.non_instructional import splitting
from langshift.recipes.recipe import Recipe, Stage, StageContext

N = "noninstruct"  # the config section


def _source(n, field, source=None):
  src = ml_collections.ConfigDict((source or n.corpus).to_dict())
  src.text_field = field
  return data_config_lib.resolve_sources(ml_collections.ConfigDict({"sources": {"corpus": src}}))[0]


def split_corpus(ctx: StageContext) -> dict[str, Any]:
  """Stage 1: each document cut at its middle unit into the first half (the teacher's prompt)
  and the reference second half; response_tuning keeps each record's response whole."""
  config, p = ctx.config, ctx.paths
  n, out = config.noninstruct, p["split"]
  field = n.response_field if n.mode == "response_tuning" else n.corpus.text_field
  docs = rio.read_documents(
      _source(n, field),
      id_field=n.id_field,
      on_bad_record=config.data.on_bad_record,
      limit=n.max_documents,
  )
  if not docs:
    raise ValueError(f"config.noninstruct.corpus: {n.corpus.path} holds no documents")
  if n.mode == "response_tuning":
    write_jsonl(os.path.join(out, "documents.jsonl"), docs)
    return dict(documents=len(docs))
  texts = [d["text"] for d in docs]
  tokenizer = None
  if n.split.unit == "token":
    from langshift.tokenization.tokenizer import load_tokenizer  # pylint: disable=import-outside-toplevel

    tokenizer = load_tokenizer(config.tokenizer or config.init_from_hf)
  if n.split.max_units:  # long documents keep their first max_units units (at a word end)
    cut = splitting.unit_offsets(texts, n.split.unit, tokenizer)
    texts = [splitting.truncate(t, o, n.split.max_units) for t, o in zip(texts, cut)]
  halves = splitting.split_documents(
      texts, tokenizer, unit=n.split.unit, min_units=n.split.min_units
  )
  kept = [(d, h) for d, h in zip(docs, halves) if h is not None]
  if not kept:
    longest = max(len(o) for o in splitting.unit_offsets(texts, n.split.unit, tokenizer))
    raise ValueError(
        f"config.noninstruct.split.min_units={n.split.min_units}: every document of "
        f"{n.corpus.path} is shorter (the longest has {longest} {n.split.unit}s); nothing to split"
    )
  requests = (
      {
          "id": d["id"],
          "messages": splitting.continuation_messages(h["prompt"], n.continue_prompt),
          "first_half": h["prompt"],
          "reference": h["reference"],
      }
      for d, h in kept
  )
  written = write_jsonl(os.path.join(out, "requests.jsonl"), requests)
  summary = dict(
      documents=len(docs),
      split=written,
      too_short=len(docs) - written,
      mean_units=sum(h["units"] for _, h in kept) / written,
  )
  if n.heldout.path:
    summary["heldout_prompts"] = _heldout_prompts(config, out, tokenizer)
  return summary


def _heldout_prompts(config, out, tokenizer) -> int:
  """`heldout_prompts.jsonl` in the response_eval layout: first halves of held-out documents as
  prompts, their second halves as references."""
  n = config.noninstruct
  docs = rio.read_documents(
      _source(n, n.heldout.text_field, n.heldout), on_bad_record=config.data.on_bad_record
  )
  texts = [d["text"] for d in docs]
  halves = splitting.split_documents(
      texts, tokenizer, unit=n.split.unit, min_units=n.split.min_units
  )
  chosen = [h for h in halves if h is not None][: n.heldout_prompts]
  if not chosen:
    raise ValueError(
        f"config.noninstruct.heldout: no document of {n.heldout.path} has "
        f"split.min_units={n.split.min_units} {n.split.unit}s"
    )
  return write_jsonl(
      os.path.join(out, "heldout_prompts.jsonl"),
      (
          {"prompt": h["prompt"], "language": n.heldout_language, "reference": h["reference"]}
          for h in chosen
      ),
  )


def teacher_continuations(ctx: StageContext) -> dict[str, Any]:
  """Stage 2: the teacher continues every first half (the resumable generation job: a killed
  run continues, each request answered exactly once). Failed requests stop the stage with one
  line; the rerun retries only them."""
  config, p = ctx.config, ctx.paths
  from langshift.generation.job import read_outputs  # pylint: disable=import-outside-toplevel

  n, out = config.noninstruct, os.path.join(p["teacher"], "outputs")
  new, seconds = roles.run_job(
      os.path.join(p["split"], "requests.jsonl"),
      out,
      roles.make_generator(
          n.teacher, rules=config.logical_rules, num_devices=config.mesh.num_devices
      ),
      n.teacher,
      derived_seed(config.seed, "teacher"),
      stage="teacher",
      output_field="completion",
  )
  outputs = read_outputs(out)
  length = roles.length_fn(n.teacher)
  tokens = sum(length(o["completion"]) for o in new)
  return dict(
      continuations=len(outputs),
      teacher=roles.role_name(n.teacher),
      teacher_seconds=seconds,
      teacher_generated_tokens=tokens,
      teacher_tokens_per_s=tokens / seconds if seconds else 0.0,
      teacher_documents_per_s=len(new) / seconds if seconds else 0.0,
  )


def build_pairs(ctx: StageContext) -> dict[str, Any]:
  """Stage 3: the pair records the student trains on. Continuation mode joins the job's
  `completion` to the first half as `response` (the field the pair template reads); empty
  continuations are left out and counted."""
  config, p = ctx.config, ctx.paths
  from langshift.generation.job import read_outputs  # pylint: disable=import-outside-toplevel

  n, out = config.noninstruct, os.path.join(p["pairs"], "pairs.jsonl")
  if n.mode == "response_tuning":
    docs = read_jsonl(os.path.join(p["split"], "documents.jsonl"))
    written = write_jsonl(out, ({"id": d["id"], "response": d["text"]} for d in docs))
    return dict(pairs=written)
  outputs = read_outputs(os.path.join(p["teacher"], "outputs"))
  pairs, empty = splitting.join_continuations(outputs)
  if not pairs:
    raise ValueError(
        f"stage pairs: the teacher returned empty text for all {len(outputs)} documents (see "
        f"{p['teacher']}/outputs); check noninstruct.teacher and its continue_prompt"
    )
  written = write_jsonl(out, pairs)
  return dict(pairs=written, empty_continuations=len(empty))


def fine_tune(ctx: StageContext) -> dict[str, Any]:
  """Stage 4: SFT of the student on the pairs, loss on the assistant span (LoRA or full, as
  `train.trainable` says); its evaluations (`config.evals`) run before and after."""
  from langshift.evaluation.evaluators import response_eval  # pylint: disable=import-outside-toplevel

  config, p = ctx.config, ctx.paths
  template = "response" if config.noninstruct.mode == "response_tuning" else "pair"
  data = config.copy_and_resolve_references().data
  evals = config.copy_and_resolve_references().evals
  heldout = os.path.join(p["split"], "heldout_prompts.jsonl")
  with data.unlocked(), evals.unlocked():
    data.sources.pairs = data_config_lib.source_config(
        path=os.path.join(p["pairs"], "pairs.jsonl"), format="jsonl", template=template
    )
    if os.path.exists(heldout):
      evals.responses = response_eval(
          prompts=heldout,
          at_start=True,
          max_examples=0,
          max_new_tokens=config.noninstruct.heldout_max_new_tokens,
      )
  sft = training.training_config(config, data=data, evals=evals)
  return training.train_stage("sft", sft, p["sft"])


def describe_export(ctx: StageContext) -> dict[str, Any]:
  """Stage 5: the exported student (merged model; PEFT adapter for LoRA) and the sizes of what
  trained: trainable parameters and the optimizer state they needed (from abstract shapes)."""
  config, p = ctx.config, ctx.paths
  summary = dict(model=os.path.join(p["sft"], "hf"), **training_sizes(config))
  adapter = os.path.join(p["sft"], "hf_adapter")
  if os.path.isdir(adapter):
    summary["peft_adapter"] = adapter
  os.makedirs(p["export"], exist_ok=True)
  with open(os.path.join(p["export"], "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
  return summary


def training_sizes(config) -> dict[str, Any]:
  """Parameters, trainable parameters and optimizer-state bytes of the config's training run,
  from `jax.eval_shape` (nothing is allocated)."""
  # pylint: disable=import-outside-toplevel
  import flax.linen as nn
  import jax

  from langshift.models import lora as lora_lib
  from langshift.models.llama import abstract_params
  from langshift.train import optimizer
  from langshift.train.trainer import resolve_model_config

  tc, opt = config.train, ml_collections.ConfigDict(config.optimizer.to_dict())
  with opt.ignore_type():
    opt.total_steps = opt.total_steps or tc.steps
  model_cfg = resolve_model_config(config)
  if tc.trainable == "lora":
    model_cfg = lora_lib.with_lora(model_cfg, tc.lora)
  shapes = nn.unbox(abstract_params(model_cfg))
  spec = optimizer.trainable_spec(tc)
  tx, _ = optimizer.make_optimizer(opt, shapes, spec)
  mask = jax.tree.leaves(optimizer.trainable_mask(shapes, spec))
  state = jax.eval_shape(tx.init, shapes)
  return dict(
      trainable=tc.trainable,
      params=sum(int(x.size) for x in jax.tree.leaves(shapes)),
      trainable_params=sum(int(x.size) for x, m in zip(jax.tree.leaves(shapes), mask) if m),
      # Adam's moments (the scalar step counters left out).
      optimizer_state_bytes=sum(
          int(x.size) * x.dtype.itemsize for x in jax.tree.leaves(state) if x.ndim
      ),
  )


def evaluate_student(ctx: StageContext) -> dict[str, Any]:
  """Stage 6: the SFT's before/after evaluations (judge-free proxies from `config.evals`) and,
  with `evaluate.judge_prompts`, pairwise judging of the tuned against the untuned student."""
  config, p = ctx.config, ctx.paths
  summary = ctx.stages["sft"]
  metrics = {k: v for k, v in summary.items() if k.endswith(("_before", "_after"))}
  os.makedirs(p["evaluate"], exist_ok=True)
  if config.noninstruct.evaluate.judge_prompts:
    metrics.update(_judge(config, p))
  metrics.update(
      judged_benchmarks.run(
          config.noninstruct.evaluate,
          {"": os.path.join(p["sft"], "hf")},
          p["evaluate"],
          num_devices=config.mesh.num_devices,
          chat_template=roles.run_chat_template(config),
          seed=config.seed,
      )
  )
  with open(os.path.join(p["evaluate"], "metrics.json"), "w") as f:
    json.dump(metrics, f, indent=1, sort_keys=True)
  return metrics


def _judge(config, p) -> dict[str, float]:
  """The tuned student (sft/hf) against the untuned one (init_from_hf) on the judge prompts,
  both orders (`langshift.recipes.judging`); score > 50 favours the tuned one."""
  from langshift.evaluation.response_eval import load_response_prompts  # pylint: disable=import-outside-toplevel

  ev = config.noninstruct.evaluate
  prompts = load_response_prompts(ev.judge_prompts)
  if ev.max_judge_prompts:
    prompts = prompts[: ev.max_judge_prompts]
  return judging.judge_tuned_against_untuned(
      config,
      ev.judge,
      [x.prompt for x in prompts],
      tuned=os.path.join(p["sft"], "hf"),
      untuned=config.init_from_hf,
      answer_max_new_tokens=ev.answer_max_new_tokens,
      batch_size=roles.role_config().batch_size,
      out_path=os.path.join(p["evaluate"], "judged.jsonl"),
  )


def _continuation(config) -> bool:
  return config.noninstruct.mode == "continuation"


RECIPE = Recipe(
    name="noninstruct",
    title="non-instructional fine-tuning",
    section=N,
    section_config=ni_config.noninstruct_config,
    check=ni_config.check_config,
    required_settings=ni_config.REQUIRED_SETTINGS,
    required_inputs=ni_config.required_inputs,
    stages=(
        Stage(
            "split",
            "split",
            split_corpus,
            reads=(
                f"{N}.mode",
                f"{N}.corpus",
                f"{N}.id_field",
                f"{N}.response_field",
                f"{N}.max_documents",
                f"{N}.split",
                f"{N}.continue_prompt",
                f"{N}.heldout",
                f"{N}.heldout_language",
                f"{N}.heldout_prompts",
                "init_from_hf",
                "tokenizer",
                "data.on_bad_record",
            ),
        ),
        Stage(
            "teacher",
            "teacher",
            teacher_continuations,
            reads=(f"{N}.teacher", "seed"),
            when=_continuation,
            skip_note="mode=response_tuning trains on the records' own responses",
            resumable=True,
        ),
        Stage("pairs", "pairs", build_pairs, reads=(f"{N}.mode",)),
        Stage(
            "sft",
            "sft",
            fine_tune,
            reads=(f"{N}.mode", f"{N}.heldout_max_new_tokens"),
            trains="",
        ),
        Stage("export", "export", describe_export),
        Stage(
            "evaluate",
            "evaluate",
            evaluate_student,
            reads=(f"{N}.evaluate", "data.chat_template", "seed"),
        ),
    ),
    export=lambda ctx: os.path.join(ctx.paths["sft"], "hf"),
    export_name="student",
)
