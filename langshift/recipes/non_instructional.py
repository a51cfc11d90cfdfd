"""Non-instructional fine-tuning end to end: `run_non_instructional(config, workdir)`.

Xie, Syu & Lee 2024, "Non-instructional Fine-tuning: Enabling Instruction-Following Capabilities
in Pre-trained Language Models without Instruction-Following Data" (arXiv:2409.00096, Sec. 3):
ordinary documents are split at their midpoint, a teacher continues the first half, and the
student is fine-tuned on (user: first half -> assistant: continuation), loss on the assistant span.

One config, six resumable stages (`stages.py`), each writing one folder of the workdir:

  split/      each document cut at its middle unit (requests.jsonl: the teacher's conversations)
  teacher/    the teacher's continuations (outputs/: the resumable, exactly-once generation job)
  pairs/      (first half, continuation) records for the pair template (pairs.jsonl)
  sft/        the student fine-tuned on the pairs, LoRA or full (`train.trainable`); hf/ is the
              merged model, hf_adapter/ the PEFT adapter of a LoRA run
  export/     what the run produced and its sizes (summary.json: trainable parameters and
              optimizer-state bytes)
  evaluate/   the judge-free proxies before and after SFT and, with a judge, pairwise judging of
              the tuned student against the untuned one (metrics.json)

Settings are the `noninstruct` section (`noninstruct_config()`); the student's training is the
engine config around it (`init_from_hf`, `train`, `optimizer`, `data.chat_template`, `evals`).
`mode="response_tuning"` is the close baseline of Hewitt et al. 2024 ("Instruction Following
without Instruction Tuning", arXiv:2409.14254, Sec. 3): records' responses behind an empty
instruction, loss on the response, and no teacher.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import ml_collections

from langshift import config_lib
from langshift.data import config as data_config_lib
from langshift.data import non_instructional as ni
from langshift.data.pipeline import derived_seed
from langshift.evaluation.judge import JUDGE_MAX_NEW_TOKENS
from langshift.recipes import rewrite_io as rio
from langshift.recipes import roles
from langshift.recipes import stages as stages_lib
from langshift.recipes.stages import StageInterrupted

STAGE_DIRS = dict(
    split="split", teacher="teacher", pairs="pairs", sft="sft", export="export", evaluate="evaluate"
)
MODES = ("continuation", "response_tuning")


def noninstruct_config() -> ml_collections.ConfigDict:
  """The recipe's own config section, `config.noninstruct`."""
  return ml_collections.ConfigDict(
      dict(
          mode="continuation",  # continuation | response_tuning (Hewitt et al. 2024)
          # Documents (any `data` source: JSONL, Parquet, ...; OpenWebText's layout is JSONL or
          # Parquet with a "text" field). response_tuning reads `response_field` instead.
          corpus=data_config_lib.source_config(path="", format="jsonl"),
          id_field="id",
          response_field="response",  # response_tuning: the record field holding the response
          max_documents=0,  # read at most this many documents (0: all)
          # The split unit is open in the paper: student tokens by default, or words, or chars.
          split=dict(unit="token", min_units=32, max_units=0),  # max_units > 0: cut longer docs
          continue_prompt=ni.CONTINUE_PROMPT,  # the teacher's request; "{text}" is the first half
          # Held-out documents (same schema as `corpus`; "" = none), split like the corpus into
          # prompts with their real second half as reference: the SFT then evaluates before and
          # after (`response_eval`): response-language rate and reference NLL per token.
          heldout=data_config_lib.source_config(path="", format="jsonl"),
          heldout_language="en",
          heldout_prompts=16,
          heldout_max_new_tokens=64,
          teacher=roles.role_config(backend="openai", max_new_tokens=1024, temperature=0.0),
          evaluate=dict(
              # Prompts for the pairwise judge (the response_eval JSONL layout; "" = no judging):
              # the tuned student's answers against the untuned student's, both orders.
              judge_prompts="",
              max_judge_prompts=0,
              # The judge explains before its verdict: a budget that cuts the explanation loses
              # the verdict (langshift/evaluation/judge.py: JUDGE_MAX_NEW_TOKENS).
              judge=roles.role_config(backend="openai", max_new_tokens=JUDGE_MAX_NEW_TOKENS),
              answer_max_new_tokens=256,
          ),
      )
  )


# Engine settings the recipe needs and the experiment file must state (checked, not overridden).
REQUIRED_SETTINGS = {"checkpoint.export_hf_at_end": True}


def paths(workdir: str) -> dict[str, str]:
  return {name: os.path.join(workdir, d) for name, d in STAGE_DIRS.items()}


def stage_inputs(config, stage: str) -> dict[str, Any]:
  """Every config value stage `stage` reads: its fingerprint in the stage marker."""
  n = "noninstruct"
  keys = {
      "split": [
          f"{n}.mode",
          f"{n}.corpus",
          f"{n}.id_field",
          f"{n}.response_field",
          f"{n}.max_documents",
          f"{n}.split",
          f"{n}.continue_prompt",
          f"{n}.heldout",
          f"{n}.heldout_language",
          f"{n}.heldout_prompts",
          "init_from_hf",
          "tokenizer",
          "data.on_bad_record",
      ],
      "teacher": [f"{n}.teacher", "seed"],
      "pairs": [f"{n}.mode"],
      "sft": [
          "seed",
          "init_from_hf",
          "model",
          "data",
          "train",
          "optimizer",
          f"{n}.heldout_max_new_tokens",
      ],
      "export": [],
      "evaluate": [f"{n}.evaluate", "data.chat_template"],
  }[stage]
  return roles.stage_inputs(config, keys)


@stages_lib.stoppable
def run_non_instructional(
    config: ml_collections.ConfigDict, workdir: str, *, log: Callable[[str], None] = print
) -> dict[str, Any]:
  """Runs (or continues) every stage; returns {'status', 'stages', 'export'}."""
  check_noninstruct_config(config)
  p, runner = paths(workdir), stages_lib.recipe_runner(config, workdir, log, STAGE_DIRS)
  stages: dict[str, Any] = {}

  def run(name, body, **kwargs):
    stages[name] = runner.run(name, p[name], body, inputs=stage_inputs(config, name), **kwargs)
    runner.log(f"langshift: stage {name}: {stages_lib.format_counts(stages[name])}")

  run("split", lambda: split_corpus(config, p))
  if config.noninstruct.mode == "continuation":
    run("teacher", lambda: teacher_continuations(config, p), clear_partial=False)
  run("pairs", lambda: build_pairs(config, p))
  try:
    run("sft", lambda: fine_tune(config, p), clear_partial=False, collective=True)
  except StageInterrupted as e:
    runner.log("langshift: stopped during sft; rerun the same command to continue")
    stages["sft"] = e.summary
    return {"status": "preempted", "stages": stages, "export": None}
  run("export", lambda: describe_export(config, p))
  run("evaluate", lambda: evaluate_student(config, p))
  export = os.path.join(p["sft"], "hf")
  runner.log(f"langshift: non-instructional fine-tuning done; student: {export}")
  return {"status": "done", "stages": stages, "export": export}


def check_noninstruct_config(config) -> None:
  """One-line errors, before any stage runs."""
  if "noninstruct" not in config:
    raise ValueError(
        "config.recipe='noninstruct' needs a config.noninstruct section: config.noninstruct = "
        "langshift.recipes.non_instructional.noninstruct_config()"
    )
  n, where = config.noninstruct, "config.noninstruct"
  data_config_lib.check_fields(dict(n), noninstruct_config(), where)
  if n.mode not in MODES:
    raise ValueError(f"{where}.mode={n.mode!r}; expected one of {MODES}")
  data_config_lib.resolve_sources(ml_collections.ConfigDict({"sources": {"corpus": n.corpus}}))
  if n.split.unit not in ni.SPLIT_UNITS:
    raise ValueError(f"{where}.split.unit={n.split.unit!r}; expected one of {ni.SPLIT_UNITS}")
  if n.split.min_units < 2:
    raise ValueError(f"{where}.split.min_units={n.split.min_units}; expected >= 2")
  if n.mode == "continuation":
    roles.check_role(n.teacher, f"{where}.teacher")
    if "{text}" not in n.continue_prompt:
      raise ValueError(f"{where}.continue_prompt has no {{text}} for the first half")
  if not config.init_from_hf or not os.path.isdir(config.init_from_hf):
    raise ValueError(
        f"config.init_from_hf={config.init_from_hf!r}: give the student's local Hugging Face "
        "directory"
    )
  if len(config.data.sources):
    raise ValueError(
        "config.data.sources must be empty: the recipe trains the student on its own pairs "
        "(noninstruct.corpus is the input)"
    )
  if n.evaluate.judge_prompts:
    roles.check_role(n.evaluate.judge, f"{where}.evaluate.judge")
  flat = config_lib.flatten(config)
  for key, required in REQUIRED_SETTINGS.items():
    if flat[key] != required:
      raise ValueError(
          f"config.{key}={flat[key]!r} contradicts the non-instructional recipe, which needs "
          f"{required!r}"
      )


# --- Stages ---------------------------------------------------------------------------------


def _source(n, field, source=None):
  src = ml_collections.ConfigDict((source or n.corpus).to_dict())
  src.text_field = field
  return data_config_lib.resolve_sources(ml_collections.ConfigDict({"sources": {"corpus": src}}))[0]


def split_corpus(config, p) -> dict[str, Any]:
  """Stage 1: each document cut at its middle unit into the first half (the teacher's prompt)
  and the reference second half; response_tuning keeps each record's response whole."""
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
    rio.write_jsonl(os.path.join(out, "documents.jsonl"), docs)
    return dict(documents=len(docs))
  texts = [d["text"] for d in docs]
  tokenizer = None
  if n.split.unit == "token":
    from langshift.tokenization.tokenizer import load_tokenizer  # pylint: disable=import-outside-toplevel

    tokenizer = load_tokenizer(config.tokenizer or config.init_from_hf)
  if n.split.max_units:  # long documents keep their first max_units units (at a word end)
    cut = ni.unit_offsets(texts, n.split.unit, tokenizer)
    texts = [ni.truncate(t, o, n.split.max_units) for t, o in zip(texts, cut)]
  halves = ni.split_documents(texts, tokenizer, unit=n.split.unit, min_units=n.split.min_units)
  kept = [(d, h) for d, h in zip(docs, halves) if h is not None]
  if not kept:
    longest = max(len(o) for o in ni.unit_offsets(texts, n.split.unit, tokenizer))
    raise ValueError(
        f"config.noninstruct.split.min_units={n.split.min_units}: every document of "
        f"{n.corpus.path} is shorter (the longest has {longest} {n.split.unit}s); nothing to split"
    )
  requests = (
      {
          "id": d["id"],
          "messages": ni.continuation_messages(h["prompt"], n.continue_prompt),
          "first_half": h["prompt"],
          "reference": h["reference"],
      }
      for d, h in kept
  )
  written = rio.write_jsonl(os.path.join(out, "requests.jsonl"), requests)
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
  halves = ni.split_documents(texts, tokenizer, unit=n.split.unit, min_units=n.split.min_units)
  chosen = [h for h in halves if h is not None][: n.heldout_prompts]
  if not chosen:
    raise ValueError(
        f"config.noninstruct.heldout: no document of {n.heldout.path} has "
        f"split.min_units={n.split.min_units} {n.split.unit}s"
    )
  return rio.write_jsonl(
      os.path.join(out, "heldout_prompts.jsonl"),
      (
          {"prompt": h["prompt"], "language": n.heldout_language, "reference": h["reference"]}
          for h in chosen
      ),
  )


def teacher_continuations(config, p) -> dict[str, Any]:
  """Stage 2: the teacher continues every first half (the resumable generation job: a killed
  run continues, each request answered exactly once). Failed requests stop the stage with one
  line; the rerun retries only them."""
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


def build_pairs(config, p) -> dict[str, Any]:
  """Stage 3: the pair records the student trains on. Continuation mode joins the job's
  `completion` to the first half as `response` (the field the pair template reads); empty
  continuations are left out and counted."""
  from langshift.generation.job import read_outputs  # pylint: disable=import-outside-toplevel

  n, out = config.noninstruct, os.path.join(p["pairs"], "pairs.jsonl")
  if n.mode == "response_tuning":
    docs = rio.read_jsonl(os.path.join(p["split"], "documents.jsonl"))
    written = rio.write_jsonl(out, ({"id": d["id"], "response": d["text"]} for d in docs))
    return dict(pairs=written)
  outputs = read_outputs(os.path.join(p["teacher"], "outputs"))
  pairs, empty = ni.join_continuations(outputs)
  if not pairs:
    raise ValueError(
        f"stage pairs: the teacher returned empty text for all {len(outputs)} documents (see "
        f"{p['teacher']}/outputs); check noninstruct.teacher and its continue_prompt"
    )
  written = rio.write_jsonl(out, pairs)
  return dict(pairs=written, empty_continuations=len(empty))


def fine_tune(config, p) -> dict[str, Any]:
  """Stage 4: SFT of the student on the pairs, loss on the assistant span (LoRA or full, as
  `train.trainable` says); its evaluations (`config.evals`) run before and after."""
  # pylint: disable=import-outside-toplevel
  from langshift.evaluation.evaluators import response_eval
  from langshift.train.trainer import train_and_evaluate

  sft = config.copy_and_resolve_references()
  template = "response" if config.noninstruct.mode == "response_tuning" else "pair"
  heldout = os.path.join(p["split"], "heldout_prompts.jsonl")
  with sft.unlocked():
    sft.recipe = "cpt"
    sft.data.sources.pairs = data_config_lib.source_config(
        path=os.path.join(p["pairs"], "pairs.jsonl"), format="jsonl", template=template
    )
    if os.path.exists(heldout):
      sft.evals.responses = response_eval(
          prompts=heldout,
          at_start=True,
          max_examples=0,
          max_new_tokens=config.noninstruct.heldout_max_new_tokens,
      )
  summary = train_and_evaluate(sft, p["sft"])
  if summary.get("stop_reason") == "preempted":
    raise StageInterrupted("sft", summary)
  return summary


def describe_export(config, p) -> dict[str, Any]:
  """Stage 5: the exported student (merged model; PEFT adapter for LoRA) and the sizes of what
  trained: trainable parameters and the optimizer state they needed (from abstract shapes)."""
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


def evaluate_student(config, p) -> dict[str, Any]:
  """Stage 6: the SFT's before/after evaluations (judge-free proxies from `config.evals`) and,
  with `evaluate.judge_prompts`, pairwise judging of the tuned against the untuned student."""
  with open(os.path.join(os.path.dirname(p["sft"]), "stages", "sft.json")) as f:
    summary = json.load(f)["summary"]
  metrics = {k: v for k, v in summary.items() if k.endswith(("_before", "_after"))}
  os.makedirs(p["evaluate"], exist_ok=True)
  if config.noninstruct.evaluate.judge_prompts:
    metrics.update(_judge(config, p))
  with open(os.path.join(p["evaluate"], "metrics.json"), "w") as f:
    json.dump(metrics, f, indent=1, sort_keys=True)
  return metrics


def make_judge(config):
  """The `JudgeFn` of `noninstruct.evaluate.judge`, with that role's generation options."""
  from langshift.evaluation import judge as judge_lib  # pylint: disable=import-outside-toplevel

  role = config.noninstruct.evaluate.judge
  return judge_lib.llm_judge(
      roles.make_generator(role), roles.generation_options(role, derived_seed(config.seed, "judge"))
  )


def _judge(config, p) -> dict[str, float]:
  """Answers of the untuned (init_from_hf) and tuned (sft/hf) students to the judge prompts,
  judged in both orders (`langshift.evaluation.judge`); score > 50 favours the tuned one."""
  # pylint: disable=import-outside-toplevel
  from langshift.evaluation import judge as judge_lib
  from langshift.evaluation.response_eval import load_response_prompts

  ev = config.noninstruct.evaluate
  prompts = load_response_prompts(ev.judge_prompts)
  if ev.max_judge_prompts:
    prompts = prompts[: ev.max_judge_prompts]
  questions = [x.prompt for x in prompts]
  answers = {}
  for name, hf_dir in (("after", os.path.join(p["sft"], "hf")), ("before", config.init_from_hf)):
    # Both in the run's chat template: the untuned base student has none of its own.
    role = roles.student_role(
        config, hf_dir, max_new_tokens=ev.answer_max_new_tokens, dtype="float32"
    )
    generator = roles.make_generator(
        role, rules=config.logical_rules, num_devices=config.mesh.num_devices
    )
    answers[name] = generator.chat(
        [[{"role": "user", "content": q}] for q in questions],
        roles.generation_options(role, derived_seed(config.seed, "judge_answers")),
    )
  result = judge_lib.judge_pairs(make_judge(config), questions, answers["after"], answers["before"])
  # What was judged, for reading the verdicts: score 1 = the tuned answer won in both orders,
  # None = left out (a verdict could not be parsed).
  rio.write_jsonl(
      os.path.join(p["evaluate"], "judged.jsonl"),
      (
          dict(question=q, after=a, before=b, score=s)
          for q, a, b, s in zip(questions, answers["after"], answers["before"], result.scores)
      ),
  )
  return result.metrics("judge")
