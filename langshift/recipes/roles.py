"""Generation roles of a recipe (an expert, a worker, a judge): their config and their backend.

A role is either a local Hugging Face checkpoint run by langshift's own decoder on this process's
devices (`backend="local"`), or a model behind an OpenAI-compatible server (`backend="openai"`:
vLLM, llama.cpp, TGI, a hosted API). Either way the recipe sees one `TextGenerator`.

Local roles load onto this process's devices only (a mesh over `jax.local_devices()`), so in a
multi-host job every host holds its own replica and rewrites its own share of the work: corpus
rewriting is embarrassingly parallel, and no host waits on another's decode loop.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Any

import ml_collections

from langshift import config_lib
from langshift.generation.interface import GenerationOptions

BACKENDS = ("local", "openai")
# Characters per token assumed when a role has no tokenizer to count with (a server model).
CHARS_PER_TOKEN = 4


def role_config(**fields) -> ml_collections.ConfigDict:
  """A role's settings; unknown fields are an error naming them."""
  defaults = dict(
      backend="local",  # local | openai
      hf_dir="",  # local: the Hugging Face checkpoint; openai: optional, its tokenizer counts
      base_url="",  # openai: e.g. http://127.0.0.1:8000/v1
      model="",  # openai: the model name on the server
      api_key_env="",  # openai: environment variable holding the API key ("" = none)
      max_new_tokens=1024,
      temperature=0.0,  # 0 = greedy
      top_p=1.0,
      batch_size=32,  # requests handed to the backend at once (local: the decode batch)
      # Requests per output shard of the generation job: the unit of work a host takes in a
      # multi-host job and of resumption. Changing it in a half-done job is refused (fingerprint).
      shard_size=512,
      max_concurrency=8,  # openai: requests in flight
      timeout_s=300.0,  # openai: per request
      max_retries=3,  # openai: retries of a request that can succeed (timeouts, 429, 5xx)
      max_input_tokens=2048,  # longer documents are cut at paragraph boundaries
      dtype="bfloat16",  # local: compute dtype
      system_prompt=True,  # put the instructions in a system turn (False: in the user turn)
      # local: the chat template prompts are rendered in: "" = the checkpoint's own, else a
      # built-in name or a jinja string (as `data.chat_template`). Recipes set it to the run's
      # `data.chat_template` for the student they trained, before and after (`student_role`).
      chat_template="",
  )
  config_lib.check_fields(fields, defaults, "role_config")
  config = ml_collections.ConfigDict(defaults)
  config.update(fields)
  return config


def check_role(role, where: str, *, needs_weights: bool = True) -> None:
  """One-line errors for a role's settings, before anything runs."""
  config_lib.check_fields(dict(role), role_config(), where)
  if role.backend not in BACKENDS:
    raise ValueError(f"{where}.backend={role.backend!r}; expected one of {BACKENDS}")
  if role.backend == "openai" and not role.base_url:
    raise ValueError(f"{where}.base_url is empty: give the OpenAI-compatible server (…/v1)")
  if role.backend == "local" and needs_weights and not os.path.isdir(role.hf_dir):
    raise ValueError(f"{where}.hf_dir={role.hf_dir!r}: give a local Hugging Face model directory")
  for key in ("max_new_tokens", "batch_size", "max_input_tokens", "shard_size"):
    if role[key] <= 0:
      raise ValueError(f"{where}.{key}={role[key]}; expected > 0")
  if role.get("chat_template"):
    from langshift.tokenization import chat_templates  # pylint: disable=import-outside-toplevel

    try:
      chat_templates.resolve_chat_template(role.chat_template, None)
    except chat_templates.ChatTemplateError as e:
      raise ValueError(f"{where}.chat_template: {e}") from None


def run_chat_template(config) -> str:
  """The run's `data.chat_template` as a role's `chat_template` ("" for "tokenizer")."""
  template = config.data.chat_template
  return "" if template in ("", "tokenizer") else template


def student_role(config, hf_dir: str, **fields) -> ml_collections.ConfigDict:
  """A local role on a checkpoint of the run's student, untuned (`init_from_hf`) or tuned: it
  prompts in the run's chat template (`data.chat_template`), so both answer in the format the
  student was trained in, and a base checkpoint, which has no template, can answer at all."""
  return role_config(
      backend="local", hf_dir=hf_dir, chat_template=run_chat_template(config), **fields
  )


def generation_options(role, seed: int) -> GenerationOptions:
  return GenerationOptions(
      max_new_tokens=role.max_new_tokens,
      temperature=role.temperature,
      top_p=role.top_p,
      seed=seed,
  )


def role_name(role) -> str:
  """What outputs record as their generator: the server model or the checkpoint folder."""
  if role.backend == "openai":
    return f"{role.model or 'default'}@{role.base_url}"
  return os.path.basename(os.path.normpath(role.hf_dir))


def length_fn(role) -> Callable[[str], int]:
  """Token count of a text under the role's tokenizer (or an estimate from characters)."""
  if role.hf_dir and os.path.isdir(role.hf_dir):
    from langshift.tokenization.tokenizer import load_tokenizer  # pylint: disable=import-outside-toplevel

    tokenizer = load_tokenizer(role.hf_dir)
    return lambda text: len(tokenizer.encode(text))
  return lambda text: math.ceil(len(text) / CHARS_PER_TOKEN)


def make_generator(role, *, rules=None, num_devices: int = 0) -> Any:
  """The role's `TextGenerator`; a local checkpoint is loaded onto this process's devices, or
  onto the first `num_devices` of them (the experiment's `mesh.num_devices`; 0: all). A small
  model on one device skips the collectives of sharding it: the tiny native-alignment rewrite
  took 11.7 s on one simulated CPU device against 32.3 s on eight (docs/benchmarks.md)."""
  if role.backend == "openai":
    from langshift.generation.openai_client import OpenAIGenerator  # pylint: disable=import-outside-toplevel

    api_key = os.environ.get(role.api_key_env) if role.api_key_env else None
    return OpenAIGenerator(
        role.base_url,
        role.model or "default",
        api_key=api_key,
        timeout_s=role.timeout_s,
        max_concurrency=role.max_concurrency,
        max_retries=role.max_retries,
    )
  # pylint: disable=import-outside-toplevel
  from langshift.checkpoints.hf_import import load_hf_model
  from langshift.generation.local_backend import LocalGenerator
  from langshift.parallel import sharding as sharding_lib
  from langshift.parallel.mesh import create_mesh, local_devices
  from langshift.tokenization.tokenizer import load_tokenizer

  devices = local_devices(num_devices)
  mesh = create_mesh({"data": 1, "fsdp": -1, "tensor": 1}, devices=devices)
  rules = sharding_lib.rules_from_config(rules)
  config, params = load_hf_model(role.hf_dir, mesh=mesh, rules=rules, dtype=role.dtype)
  # Decode rows are split over the local devices: the batch is padded up to a multiple of them.
  decode_batch = -(-role.batch_size // len(devices)) * len(devices)
  return LocalGenerator(
      config,
      params,
      load_tokenizer(role.hf_dir, chat_template=role.get("chat_template") or None),
      batch_size=decode_batch,
      mesh=mesh,
      rules=rules,
  )


def run_job(
    requests_path: str,
    out_dir: str,
    generator: Any,
    role,
    seed: int,
    *,
    stage: str,
    output_field: str,
    worker_index: int = 0,
    num_workers: int = 1,
    barrier: Callable[[], None] = lambda: None,
) -> tuple[list[dict[str, Any]], float]:
  """Runs (or resumes) a recipe stage's generation job (`langshift.generation.job`) with the
  role's settings; returns the records this call wrote (by every host, read after `barrier`) and
  its seconds. Requests that failed stop the stage with one line naming the failures file:
  finished outputs are kept and the rerun retries only what failed or is missing."""
  # pylint: disable=import-outside-toplevel
  from langshift.generation.job import JobConfig, read_failures, read_outputs, run_generation_job

  cfg = JobConfig(
      shard_size=role.shard_size,
      batch_size=role.batch_size,
      output_field=output_field,
      fault_counter=f"{stage}_records",  # LANGSHIFT_FAULT=kill@<stage>_records=N in tests
      worker_index=worker_index,
      num_workers=num_workers,
      generator_name=role_name(role),
  )
  before = {o["id"] for o in read_outputs(out_dir, include_incomplete=True)}
  start = time.perf_counter()
  result = run_generation_job(
      requests_path, out_dir, generator, generation_options(role, seed), cfg
  )
  barrier()
  seconds = time.perf_counter() - start
  # Read from the shared output folder, so that every host of a multi-host job stops alike.
  failed = read_failures(out_dir)
  if failed or result.incomplete_shards:
    raise RuntimeError(
        f"stage {stage}: {len(failed)} requests failed (see {out_dir}/failures-*.jsonl; first: "
        f"{failed[0]['error'] if failed else 'none'}); finished outputs are kept: rerun the "
        "same command to retry the rest"
    )
  new = [o for o in read_outputs(out_dir, include_incomplete=True) if o["id"] not in before]
  return new, seconds
