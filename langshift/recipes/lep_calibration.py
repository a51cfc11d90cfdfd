"""LEP's optional last step, self-calibration: the propagated instruct model answers a prompt set
and is tuned on its own answers with low-rank adapters on its first and last decoder layers plus
full embeddings (Tikhomirov & Chernyshev 2024, arXiv:2412.21140, Sec. 3.4: LoRA r 8, alpha 1,
lr 2.5e-5). The propagated embeddings were fitted in closed form; a little training on the
model's own in-language output lets the layers that read and write them adjust to them, without
instruction data and without moving the model away from its own behaviour.

Two stages of the LEP recipe, after `propagate` (`config.lep.calibration.enabled`):

  calibration_answers/  requests.jsonl (the prompts as one-turn conversations) and outputs/: the
                        propagated model's answers (the resumable, exactly-once generation job)
  calibrated/           the SFT on (prompt -> own answer) records (pairs.jsonl), loss on the
                        answer only; calibrated/hf is the calibrated chat model (merged), and
                        calibrated/hf_adapter its PEFT adapter where PEFT has a layout for it

What the paper leaves open (prompt set, epochs, batch, sequence length, warm-up) has defaults
here, documented in `calibration_config()`.
"""

from __future__ import annotations

import os
from typing import Any

import ml_collections

from langshift.data import chat_epochs
from langshift.data import config as data_config_lib
from langshift.data.parallel_sets import read_jsonl_records
from langshift.data.pipeline import derived_seed
from langshift.models import lora as lora_lib
from langshift.recipes import lep_inputs, roles
from langshift.recipes import rewrite_io as rio
from langshift.recipes.stages import StageInterrupted

STAGE_DIRS = dict(calibration_answers="calibration_answers", calibrate="calibrated")
HELDOUT_FILE = "heldout_prompts.jsonl"  # in calibration_answers/: response_eval's layout


def calibration_config() -> ml_collections.ConfigDict:
  """`config.lep.calibration`: off unless `enabled`."""
  return ml_collections.ConfigDict(
      dict(
          enabled=False,
          # The prompt set the propagated model answers (the paper's is not published; any
          # target-language instructions will do): JSONL whose records hold a "prompt" string or a
          # "messages" conversation, whose turns up to its last user turn are the request (so an
          # SFT file's reference answers are ignored: the targets are the model's own answers).
          prompts="",
          max_prompts=0,  # the first this many prompts (0: all)
          # The answering model: hf_dir "" is the propagated model itself (self-calibration); a
          # server role answers through an OpenAI-compatible endpoint serving that model.
          answerer=roles.role_config(
              backend="local", max_new_tokens=512, temperature=0.0, batch_size=16, shard_size=256
          ),
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
          # Training settings over the recipe's CPT ones (open in the paper): `epochs` passes over
          # the answers (steps = 0) or a fixed number of steps.
          epochs=1.0,
          steps=0,
          global_batch_size=32,
          seq_len=2048,
          learning_rate=2.5e-5,
          warmup_steps=10,
          schedule="constant",
          # Held-out prompts evaluated before and after the calibration (response-language rate
          # and reference NLL; "" = none): response_eval's layout (prompt, language, reference)
          # or chat records ("messages" ending in the reference answer, "lang" or "language").
          heldout_prompts="",
          max_heldout_prompts=0,  # per language (0: all)
          heldout_max_new_tokens=128,
      )
  )


STAGE_KEYS = {
    "calibration_answers": (
        "lep.calibration.prompts",
        "lep.calibration.max_prompts",
        "lep.calibration.answerer",
        "lep.calibration.heldout_prompts",
        "lep.calibration.max_heldout_prompts",
        "seed",
    ),
    "calibrate": ("lep.calibration", "seed", "model", "data.chat_template", "evals"),
}


def check_calibration_config(config) -> None:
  """One-line errors before any LEP stage runs."""
  c, where = config.lep.calibration, "config.lep.calibration"
  data_config_lib.check_fields(dict(c), calibration_config(), where)
  if not c.enabled:
    return
  if not c.prompts or not os.path.isfile(c.prompts):
    raise ValueError(f"{where}.prompts={c.prompts!r}: give a JSONL file of prompts")
  roles.check_role(c.answerer, f"{where}.answerer", needs_weights=bool(c.answerer.hf_dir))
  if not c.lora.layers:
    raise ValueError(f"{where}.lora.layers is empty: name the decoder layers to adapt")
  if c.epochs <= 0 and c.steps <= 0:
    raise ValueError(f"{where}: give epochs > 0 or steps > 0")
  if c.heldout_prompts and not os.path.isfile(c.heldout_prompts):
    raise ValueError(f"{where}.heldout_prompts={c.heldout_prompts!r} does not exist")


def stage_inputs(config, stage: str) -> dict[str, Any]:
  return roles.stage_inputs(config, STAGE_KEYS[stage])


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
  return rio.write_jsonl(out_path, requests)


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
  return rio.write_jsonl(out_path, out)


def answerer_role(config, instruct_dir: str) -> ml_collections.ConfigDict:
  role = ml_collections.ConfigDict(config.lep.calibration.answerer.to_dict())
  if role.backend == "local" and not role.hf_dir:
    role.hf_dir = instruct_dir
  return role


def generate_answers(config, out_dir: str, instruct_dir: str) -> dict[str, Any]:
  """Stage: the propagated model's answers to the prompt set (resumable, exactly once)."""
  from langshift.generation.job import read_outputs  # pylint: disable=import-outside-toplevel

  c = config.lep.calibration
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
  return dict(
      **heldout,
      prompts=prompts,
      answered=len(outputs),
      empty=sum(not o["response"].strip() for o in outputs),
      answerer=roles.role_name(role),
      answer_seconds=seconds,
      answer_tokens=tokens,
      answer_tokens_per_s=tokens / seconds if seconds else 0.0,
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


def write_pairs(answers_dir: str, out_path: str) -> tuple[int, int]:
  """Chat records (the request, then the model's own answer) for the SFT; empty answers are left
  out. Returns (written, empty)."""
  from langshift.generation.job import read_outputs  # pylint: disable=import-outside-toplevel

  outputs = read_outputs(os.path.join(answers_dir, "outputs"))
  kept = [o for o in outputs if o["response"].strip()]
  written = rio.write_jsonl(
      out_path,
      (
          {
              "id": o["id"],
              "messages": [*o["messages"], {"role": "assistant", "content": o["response"]}],
          }
          for o in kept
      ),
  )
  return written, len(outputs) - len(kept)


def sft_config(config, instruct_dir: str, answers_dir: str, pairs_path: str):
  """The engine config of the calibration: the recipe's CPT settings with the calibration's
  adapters, data and optimizer; the propagated model (and its tokenizer) as the starting point."""
  # pylint: disable=import-outside-toplevel
  from langshift.checkpoints.hf_config import read_hf_config
  from langshift.evaluation.evaluators import response_eval

  c = config.lep.calibration
  num_layers = int(read_hf_config(instruct_dir)["num_hidden_layers"])
  sft = config.copy_and_resolve_references()
  with sft.unlocked():
    sft.recipe = "cpt"
    sft.init_from_hf = instruct_dir
    sft.tokenizer = ""
    # Adapters on some layers only: the unscanned layout names each layer (layers_<i>/...).
    sft.model.scan_layers = False
    sft.train.trainable = "lora"
    sft.train.lora.update(
        rank=c.lora.rank,
        alpha=c.lora.alpha,
        dropout=c.lora.dropout,
        targets=layer_targets(c.lora, num_layers),
        train_embeddings=c.lora.train_embeddings,
        param_dtype=c.lora.param_dtype,
    )
    sft.train.update(global_batch_size=c.global_batch_size, seq_len=c.seq_len, steps=c.steps)
    sft.optimizer.update(
        learning_rate=c.learning_rate, warmup_steps=c.warmup_steps, schedule=c.schedule
    )
    sft.data.sources = ml_collections.ConfigDict(
        dict(
            answers=data_config_lib.source_config(
                path=pairs_path, format="jsonl", template="chat", loss="assistant"
            )
        )
    )
    sft.data.packing = "greedy"
    # The calibrated model keeps the instruct model's dtype (CPT's donor export was float32 for
    # the least-squares fit; this one is the model users load).
    sft.checkpoint.update(
        export_hf_at_end=True, export_dtype=lep_inputs.checkpoint_dtype(instruct_dir)
    )
    if c.heldout_prompts:
      sft.evals.responses = response_eval(
          prompts=os.path.join(answers_dir, HELDOUT_FILE),
          at_start=True,
          max_examples=0,
          max_new_tokens=c.heldout_max_new_tokens,
      )
  return sft


def calibrate(config, out_dir: str, answers_dir: str, instruct_dir: str) -> dict[str, Any]:
  """Stage: LoRA SFT of the propagated model on its own answers, through the engine."""
  from langshift.train.trainer import train_and_evaluate  # pylint: disable=import-outside-toplevel

  c = config.lep.calibration
  pairs = os.path.join(out_dir, "pairs.jsonl")
  written, empty = write_pairs(answers_dir, pairs)
  if not written:
    raise ValueError(
        f"stage calibrate: every one of the {empty} answers in {answers_dir}/outputs is empty; "
        "check config.lep.calibration.answerer"
    )
  sft = sft_config(config, instruct_dir, answers_dir, pairs)
  extra: dict[str, Any] = dict(pairs=written, empty_answers=empty)
  if not c.steps:
    steps, tokens = chat_epochs.epoch_steps(sft, pairs, c.epochs)
    with sft.unlocked():
      sft.train.steps = steps
    extra.update(epoch_steps=steps, pair_tokens=tokens)
  summary = train_and_evaluate(sft, out_dir)
  if summary.get("stop_reason") == "preempted":
    raise StageInterrupted("calibrate", {**summary, **extra})
  return {**summary, **extra}
