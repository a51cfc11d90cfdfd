"""LEP's optional last step, self-calibration (Tikhomirov & Chernyshev 2024, "Facilitating large
language model Russian adaptation with Learned Embedding Propagation", arXiv:2412.21140, Sec.
2.4.2; settings Sec. 3.4): LoRA r 8, alpha 1, lr 2.5e-5 on the first and last decoder layers plus
full embeddings, trained on answers of the *original* instruct model to a prompt set (re-tokenised
with the new tokenizer), optionally with Wikipedia "copy this article" examples and with the
answers filtered by a judge's grade; batch 64 x 8096 tokens, one epoch. The propagated embeddings
were fitted in closed form; a little training on in-language answers the original model gives
lets the layers that read and write them adjust to them, without instruction data.

Two stages of the LEP recipe (`recipe.py`), after `propagate` (`config.lep.calibration.enabled`):

  calibration_answers/  requests.jsonl (the prompts as one-turn conversations) and outputs/: the
                        answers (the resumable, exactly-once generation job) of the original
                        instruct model (`answers="instruct"`, the paper) or of the propagated
                        one (`answers="propagated"`, a variant); with `grade.enabled`, the
                        judge's verdicts in grades/ and the parsed grades in grades.jsonl
  calibrated/           the SFT on (prompt -> answer) records and the copy examples
                        (pairs.jsonl), loss on the answer only; calibrated/hf is the calibrated
                        chat model (merged), and calibrated/hf_adapter its PEFT adapter where
                        PEFT has a layout for it; its training run is the section's `run`
                        (`training.run_config()`), with the experiment's `evals` and the held-out
                        prompts

What the paper leaves open (prompt set, judge prompt and grade scale, warm-up) has defaults here,
documented in `calibration_config()`.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

import ml_collections

from langshift import config_lib
from langshift.data import config as data_config_lib
from langshift.data.parallel_sets import read_jsonl_records
from langshift.data.pipeline import derived_seed
from langshift.jsonl import write_jsonl
from langshift.models import lora as lora_lib
from langshift.recipes import roles, training
from langshift.recipes.lep import inputs as lep_inputs
from langshift.recipes.recipe import StageContext

C = "lep.calibration"  # the config section
HELDOUT_FILE = "heldout_prompts.jsonl"  # in calibration_answers/: response_eval's layout
GRADES_FILE = "grades.jsonl"  # in calibration_answers/: {"id", "grade" (None: unparsed)}
ANSWER_SOURCES = ("instruct", "propagated")
# The judge's grading request (the paper's prompt is not published): 1-10, parsed by
# `grade.pattern`. "{question}" and "{answer}" are replaced by the request and the answer.
GRADE_PROMPT = (
    "Rate the assistant's answer to the user's request from 1 (useless) to 10 (correct, complete, "
    "fluent and in the language of the request). Reply with one line: Grade: <1-10>.\n\n"
    "Request:\n{question}\n\nAnswer:\n{answer}"
)


def calibration_config() -> ml_collections.ConfigDict:
  """`config.lep.calibration`: off unless `enabled`."""
  return ml_collections.ConfigDict(
      dict(
          enabled=False,
          # The prompt set that is answered (the paper's is not published; any target-language
          # instructions will do): JSONL whose records hold a "prompt" string or a "messages"
          # conversation, whose turns up to its last user turn are the request (so an SFT file's
          # reference answers are ignored: the targets are the generated answers).
          prompts="",
          max_prompts=0,  # the first this many prompts (0: all)
          # Who answers the prompts: "instruct", the original instruct model (config.lep.instruct;
          # the paper, Sec. 2.4.2: its answers are text, re-tokenised with the new tokenizer for
          # the training) or "propagated", the propagated model answering itself (a variant).
          answers="instruct",
          # The answering model's settings: hf_dir "" is the model `answers` names; a server role
          # answers through an OpenAI-compatible endpoint serving that model.
          answerer=roles.role_config(
              backend="local", max_new_tokens=512, temperature=0.0, batch_size=16, shard_size=256
          ),
          # The paper's answers are filtered by a judge's grade: each answer is graded by the
          # `judge` role and kept when its grade is >= min_grade. A verdict with no grade in it
          # is counted (summary `unparsed_grades`) and its answer left out.
          grade=dict(
              enabled=False,
              judge=roles.role_config(backend="openai", max_new_tokens=32, temperature=0.0),
              prompt=GRADE_PROMPT,
              pattern=r"(?i)(?:grade|оценка)\s*[:=]?\s*(\d+(?:[.,]\d+)?)",
              min_grade=8.0,
          ),
          # The paper's Wikipedia article-copy examples: the first `copy_examples` records of a
          # JSONL corpus (field `copy_text_field`) as "copy this article" -> the article.
          copy_corpus="",
          copy_examples=0,
          copy_text_field="text",
          copy_prompt="Перепиши эту статью без изменений.\n\n{article}",
          # The paper's adapters: rank 8, alpha 1, on the first and last decoder layers, with the
          # embeddings (embed_tokens, lm_head) trained in full. `layers` are layer indices
          # (negative from the end); `targets` the projection presets inside those layers.
          lora=dict(
              rank=8,
              alpha=1.0,
              dropout=0.0,
              layers=(0, -1),
              targets=("attention", "mlp"),
              train_embeddings=True,
              param_dtype="float32",
          ),
          # The calibration's training run (`training.run_config()`: train, optimizer, model
          # numerics, export dtype), over the engine defaults, not the CPT's settings: `epochs`
          # passes over the answers (steps 0) or a fixed number of steps (epochs 0). The paper:
          # one epoch, batch 64, length 8096, LR 2.5e-5 (warm-up and schedule are left open).
          # Adapters on some layers only: the unscanned layout names each layer (layers_<i>/...);
          # they are set in `lora` above. export_dtype "": the instruct model's own (the
          # calibrated model is the one users load; CPT's donor export was float32 for the fit).
          run=training.run_config(
              train=dict(epochs=1.0, steps=0, global_batch_size=64, seq_len=8096, trainable="lora"),
              optimizer=dict(learning_rate=2.5e-5, warmup_steps=10, schedule="constant"),
              model=dict(scan_layers=False),
              export_dtype="",
          ),
          # Held-out prompts evaluated before and after the calibration (response-language rate
          # and reference NLL; "" = none): response_eval's layout (prompt, language, reference)
          # or chat records ("messages" ending in the reference answer, "lang" or "language").
          heldout_prompts="",
          max_heldout_prompts=0,  # per language (0: all)
          heldout_max_new_tokens=128,
      )
  )


# What each stage reads besides its training run (`Stage.reads`, recipe.py).
ANSWERS_READS = (
    f"{C}.prompts",
    f"{C}.max_prompts",
    f"{C}.answers",
    f"{C}.answerer",
    f"{C}.grade",
    "lep.instruct",
    f"{C}.heldout_prompts",
    f"{C}.max_heldout_prompts",
    "seed",
)
# The calibrate stage trains `lep.calibration.run` (read whole); it also reads what it wires into
# that run: the adapters, the training records (answers filtered by grade, copy examples), the
# starting model's dtype, the chat template and the evaluations.
CALIBRATE_READS = (
    f"{C}.lora",
    f"{C}.grade.enabled",
    f"{C}.grade.min_grade",
    f"{C}.copy_corpus",
    f"{C}.copy_examples",
    f"{C}.copy_text_field",
    f"{C}.copy_prompt",
    f"{C}.heldout_prompts",
    f"{C}.heldout_max_new_tokens",
    "lep.instruct",
    "data.chat_template",
    "data.on_bad_record",
    "evals",
)


def check_calibration_config(config) -> None:
  """One-line errors before any LEP stage runs."""
  c, where = config.lep.calibration, "config.lep.calibration"
  config_lib.check_fields(dict(c), calibration_config(), where)
  if not c.enabled:
    return
  if not c.prompts or not os.path.isfile(c.prompts):
    raise ValueError(f"{where}.prompts={c.prompts!r}: give a JSONL file of prompts")
  if c.answers not in ANSWER_SOURCES:
    raise ValueError(f"{where}.answers={c.answers!r}; expected one of {ANSWER_SOURCES}")
  roles.check_role(c.answerer, f"{where}.answerer", needs_weights=bool(c.answerer.hf_dir))
  if c.grade.enabled:
    roles.check_role(c.grade.judge, f"{where}.grade.judge")
    if "{answer}" not in c.grade.prompt and "{question}" not in c.grade.prompt:
      raise ValueError(f"{where}.grade.prompt names neither {{question}} nor {{answer}}")
    try:
      re.compile(c.grade.pattern)
    except re.error as e:
      raise ValueError(f"{where}.grade.pattern={c.grade.pattern!r}: {e}") from None
  if c.copy_examples < 0:
    raise ValueError(f"{where}.copy_examples={c.copy_examples}; expected >= 0")
  if c.copy_examples and not os.path.isfile(c.copy_corpus):
    raise ValueError(
        f"{where}.copy_corpus={c.copy_corpus!r}: give a JSONL corpus for the "
        f"{c.copy_examples} copy examples"
    )
  if c.copy_examples and "{article}" not in c.copy_prompt:
    raise ValueError(f"{where}.copy_prompt has no {{article}} to put the article in")
  if not c.lora.layers:
    raise ValueError(f"{where}.lora.layers is empty: name the decoder layers to adapt")
  training.check_run_config(c.run, f"{where}.run")
  train = c.run.train
  if (train.epochs > 0) == (train.steps > 0):
    raise ValueError(
        f"{where}.run.train: epochs={train.epochs}, steps={train.steps}; give one of them > 0 "
        "(the other 0)"
    )
  if train.trainable != "lora":
    raise ValueError(
        f"{where}.run.train.trainable={train.trainable!r}; the calibration trains LoRA adapters "
        f"(set them in {where}.lora)"
    )
  if train.lora.to_dict() != calibration_config().run.train.lora.to_dict():
    raise ValueError(f"{where}.run.train.lora is set; the adapters are {where}.lora")
  if c.heldout_prompts and not os.path.isfile(c.heldout_prompts):
    raise ValueError(f"{where}.heldout_prompts={c.heldout_prompts!r} does not exist")


def request_messages(record: dict[str, Any], where: str) -> list[dict[str, str]]:
  """The request of a prompt record: its "prompt" as one user turn, or its "messages" up to and
  including the last user turn."""
  if isinstance(record.get("prompt"), str) and record["prompt"].strip():
    return [{"role": "user", "content": record["prompt"]}]
  messages = record.get("messages")
  if isinstance(messages, list):
    users = [i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"]
    if users:
      return [dict(role=m["role"], content=m["content"]) for m in messages[: users[-1] + 1]]
  raise ValueError(f"{where}: the record has no 'prompt' string and no 'messages' with a user turn")


def _records(path: str):
  """(file:line, index, record) of a JSONL file's objects; anything else is a one-line error."""
  for index, (where, record) in enumerate(read_jsonl_records(path)):
    if not isinstance(record, dict):
      raise ValueError(f"{where}: not a JSON object")
    yield where, index, record


def write_requests(prompts_path: str, out_path: str, max_prompts: int) -> int:
  """requests.jsonl of the generation job: {"id", "messages"} per prompt, in file order."""
  requests = []
  for where, index, record in _records(prompts_path):
    rid = str(record.get("id", f"prompt-{index:06d}"))
    requests.append({"id": rid, "messages": request_messages(record, where)})
    if max_prompts and len(requests) >= max_prompts:
      break
  if not requests:
    raise ValueError(f"config.lep.calibration.prompts: {prompts_path} holds no prompts")
  return write_jsonl(out_path, requests)


def write_heldout_prompts(path: str, out_path: str, max_per_language: int) -> int:
  """The held-out prompts in response_eval's layout; chat records become (last user turn,
  language from "lang"/"language", the final assistant turn as reference)."""
  out, per_language = [], {}
  for where, _, record in _records(path):
    if "prompt" in record:
      item = {k: record[k] for k in ("prompt", "language", "reference") if k in record}
    else:
      messages = record.get("messages") or []
      last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
      item = dict(
          prompt=request_messages(record, where)[-1]["content"],
          language=record.get("language", record.get("lang")),
          **({"reference": last["content"]} if last.get("role") == "assistant" else {}),
      )
    if not isinstance(item.get("language"), str):
      raise ValueError(f"{where}: no 'language' (or 'lang') field naming the prompt's language")
    count = per_language.get(item["language"], 0)
    if max_per_language and count >= max_per_language:
      continue
    per_language[item["language"]] = count + 1
    out.append(item)
  return write_jsonl(out_path, out)


def answerer_role(config, propagated_dir: str) -> ml_collections.ConfigDict:
  """The answering role; a local one without hf_dir runs the model `answers` names."""
  c = config.lep.calibration
  role = ml_collections.ConfigDict(c.answerer.to_dict())
  if role.backend == "local" and not role.hf_dir:
    role.hf_dir = config.lep.instruct if c.answers == "instruct" else propagated_dir
  return role


def generate_answers(ctx: StageContext) -> dict[str, Any]:
  """Stage: the answers to the prompt set (resumable, exactly once), by the original instruct
  model or the propagated one (`lep_instruct/`), and their grades when `grade.enabled`."""
  from langshift.generation.job import read_outputs  # pylint: disable=import-outside-toplevel

  config, c = ctx.config, ctx.config.lep.calibration
  out_dir, instruct_dir = ctx.paths["calibration_answers"], ctx.paths["propagate"]
  requests = os.path.join(out_dir, "requests.jsonl")
  prompts = write_requests(c.prompts, requests, c.max_prompts)
  role = answerer_role(config, instruct_dir)
  new, seconds = roles.run_job(
      requests,
      os.path.join(out_dir, "outputs"),
      roles.make_generator(role, rules=config.logical_rules, num_devices=config.mesh.num_devices),
      role,
      derived_seed(config.seed, "calibration_answers"),
      stage="calibration_answers",
      output_field="response",
  )
  outputs = read_outputs(os.path.join(out_dir, "outputs"))
  length = roles.length_fn(role)
  tokens = sum(length(o["response"]) for o in new)
  heldout = {}
  if c.heldout_prompts:
    heldout["heldout_prompts"] = write_heldout_prompts(
        c.heldout_prompts, os.path.join(out_dir, HELDOUT_FILE), c.max_heldout_prompts
    )
  grades = grade_answers(config, out_dir, outputs) if c.grade.enabled else {}
  return dict(
      **heldout,
      **grades,
      prompts=prompts,
      answered=len(outputs),
      empty=sum(not o["response"].strip() for o in outputs),
      answerer=roles.role_name(role),
      answer_seconds=seconds,
      answer_tokens=tokens,
      answer_tokens_per_s=tokens / seconds if seconds else 0.0,
  )


def parse_grade(verdict: str, pattern: str) -> float | None:
  """The grade a judge's verdict gives (the pattern's first group), or None if it gives none."""
  match = re.search(pattern, verdict or "")
  if not match:
    return None
  value = float(match.group(1).replace(",", "."))
  return value if math.isfinite(value) else None


def grade_answers(config, out_dir: str, outputs: list[dict[str, Any]]) -> dict[str, Any]:
  """The judge's grade of every non-empty answer (a resumable generation job of its own), in
  grades.jsonl; returns the counts, unparsed verdicts included."""
  from langshift.generation.job import read_outputs  # pylint: disable=import-outside-toplevel

  g = config.lep.calibration.grade
  requests = []
  for o in outputs:
    if not o["response"].strip():
      continue
    question = o["messages"][-1]["content"]
    prompt = g.prompt.replace("{question}", question).replace("{answer}", o["response"])
    requests.append({"id": o["id"], "messages": [{"role": "user", "content": prompt}]})
  grades_dir = os.path.join(out_dir, "grades")
  write_jsonl(os.path.join(out_dir, "grade_requests.jsonl"), requests)
  if requests:
    roles.run_job(
        os.path.join(out_dir, "grade_requests.jsonl"),
        grades_dir,
        roles.make_generator(
            g.judge, rules=config.logical_rules, num_devices=config.mesh.num_devices
        ),
        g.judge,
        derived_seed(config.seed, "calibration_grades"),
        stage="calibration_grades",
        output_field="verdict",
    )
  verdicts = read_outputs(grades_dir) if requests else []
  graded = [{"id": v["id"], "grade": parse_grade(v["verdict"], g.pattern)} for v in verdicts]
  write_jsonl(os.path.join(out_dir, GRADES_FILE), graded)
  unparsed = sum(r["grade"] is None for r in graded)
  if unparsed:
    print(
        f"langshift: stage calibration_answers: {unparsed} of {len(graded)} judge verdicts hold "
        f"no grade (config.lep.calibration.grade.pattern); their answers are left out "
        f"(see {grades_dir})"
    )
  return dict(
      graded=len(graded),
      unparsed_grades=unparsed,
      graded_at_least_min=sum(r["grade"] is not None and r["grade"] >= g.min_grade for r in graded),
      judge=roles.role_name(g.judge),
  )


def read_grades(answers_dir: str) -> dict[str, float | None]:
  """{answer id: grade (None: unparsed)} of the calibration_answers stage."""
  return {
      r["id"]: r["grade"] for _, r in read_jsonl_records(os.path.join(answers_dir, GRADES_FILE))
  }


def copy_examples(c) -> list[dict[str, Any]]:
  """The first `copy_examples` non-blank articles of `copy_corpus` as chat records: the copy
  instruction with the article -> the article (the paper's Wikipedia copy task)."""
  out = []
  if not c.copy_examples:
    return out
  for where, record in read_jsonl_records(c.copy_corpus):
    text = record.get(c.copy_text_field) if isinstance(record, dict) else None
    if not isinstance(text, str):
      raise ValueError(f"{where}: no string field {c.copy_text_field!r} (copy_text_field)")
    if not text.strip():
      continue
    prompt = c.copy_prompt.replace("{article}", text)
    out.append(
        {
            "id": f"copy-{len(out):06d}",
            "messages": [
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": text},
            ],
        }
    )
    if len(out) == c.copy_examples:
      return out
  raise ValueError(
      f"config.lep.calibration.copy_corpus={c.copy_corpus!r} holds {len(out)} articles; "
      f"copy_examples={c.copy_examples}"
  )


def layer_targets(lora_section, num_layers: int) -> tuple[str, ...]:
  """Kernel-path regexes of the adapters: each target preset (or regex) inside each named layer
  of the unscanned layout ("layers_<i>/..."); targets anchored at the root ("^lm_head/...")
  stay as they are."""
  layers = sorted({i % num_layers for i in lora_section.layers})
  for i in lora_section.layers:
    if not -num_layers <= i < num_layers:
      raise ValueError(
          f"config.lep.calibration.lora.layers has {i}; the model has {num_layers} layers"
      )
  out = []
  for target in lora_lib.resolve_targets(tuple(lora_section.targets)):
    if target.startswith("^"):
      out.append(target)
    else:
      out.extend(f"^layers_{i}/(.*/)?{target}" for i in layers)
  return tuple(out)


def write_pairs(config, answers_dir: str, out_path: str) -> dict[str, int]:
  """Chat records (the request, then the answer) for the SFT, then the copy examples. Empty
  answers are left out, and with `grade.enabled` those graded below `min_grade` or unparsed.
  Returns the counts: answers (kept), empty, below_min_grade, unparsed_grades, copy_examples."""
  from langshift.generation.job import read_outputs  # pylint: disable=import-outside-toplevel

  c = config.lep.calibration
  outputs = read_outputs(os.path.join(answers_dir, "outputs"))
  kept = [o for o in outputs if o["response"].strip()]
  counts = dict(empty=len(outputs) - len(kept))
  if c.grade.enabled:
    grades = read_grades(answers_dir)
    counts["unparsed_grades"] = sum(grades.get(o["id"]) is None for o in kept)
    counts["below_min_grade"] = sum(
        grades.get(o["id"]) is not None and grades[o["id"]] < c.grade.min_grade for o in kept
    )
    kept = [
        o for o in kept if grades.get(o["id"]) is not None and grades[o["id"]] >= c.grade.min_grade
    ]
  copies = copy_examples(c)
  write_jsonl(
      out_path,
      [
          *(
              {
                  "id": o["id"],
                  "messages": [*o["messages"], {"role": "assistant", "content": o["response"]}],
              }
              for o in kept
          ),
          *copies,
      ],
  )
  return dict(counts, answers=len(kept), copy_examples=len(copies))


def sft_config(config, instruct_dir: str, answers_dir: str, pairs_path: str):
  """The engine config of the calibration: its own run (`lep.calibration.run`) with the adapters
  of `lep.calibration.lora`, the answers as data and the propagated model (with its tokenizer) as
  the starting point; evaluated with the experiment's `evals` and the held-out prompts."""
  # pylint: disable=import-outside-toplevel
  from langshift.checkpoints.hf_config import read_hf_config
  from langshift.evaluation.evaluators import response_eval

  c = config.lep.calibration
  num_layers = int(read_hf_config(instruct_dir)["num_hidden_layers"])
  data = data_config_lib.default_data_config()
  data.update(chat_template=config.data.chat_template, on_bad_record=config.data.on_bad_record)
  data.packing = "greedy"
  data.sources.answers = data_config_lib.source_config(
      path=pairs_path, format="jsonl", template="chat", loss="assistant"
  )
  evals = config.copy_and_resolve_references().evals
  if c.heldout_prompts:
    with evals.unlocked():
      evals.responses = response_eval(
          prompts=os.path.join(answers_dir, HELDOUT_FILE),
          at_start=True,
          max_examples=0,
          max_new_tokens=c.heldout_max_new_tokens,
      )
  sft = training.training_config(
      config, run=c.run, evals=evals, init_from_hf=instruct_dir, tokenizer="", data=data
  )
  with sft.unlocked():
    sft.train.lora.update(
        rank=c.lora.rank,
        alpha=c.lora.alpha,
        dropout=c.lora.dropout,
        targets=layer_targets(c.lora, num_layers),
        train_embeddings=c.lora.train_embeddings,
        param_dtype=c.lora.param_dtype,
    )
    sft.checkpoint.export_dtype = c.run.export_dtype or lep_inputs.checkpoint_dtype(instruct_dir)
  return sft


def calibrate(ctx: StageContext) -> dict[str, Any]:
  """Stage: LoRA SFT of the propagated model on the answers (and copy examples), through the
  engine; the answers' text is tokenised with the propagated model's (new) tokenizer."""
  config, out_dir = ctx.config, ctx.paths["calibrate"]
  answers_dir, instruct_dir = ctx.paths["calibration_answers"], ctx.paths["propagate"]
  pairs = os.path.join(out_dir, "pairs.jsonl")
  counts = write_pairs(config, answers_dir, pairs)
  written = counts["answers"] + counts["copy_examples"]
  if not written:
    raise ValueError(
        f"stage calibrate: no training records: {counts} (answers in {answers_dir}/outputs); "
        "check config.lep.calibration.answerer and .grade"
    )
  sft = sft_config(config, instruct_dir, answers_dir, pairs)
  summary = training.train_stage("calibrate", sft, out_dir)
  return {**summary, "pairs": written, "empty_answers": counts.pop("empty"), **counts}
