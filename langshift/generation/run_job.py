"""Batch generation over a JSONL of prompts with a local checkpoint or an OpenAI-compatible server.

  python -m langshift.generation.run_job --input=prompts.jsonl --output_dir=out/ \
      --model_dir=/ckpt/teacher --max_new_tokens=512
  python -m langshift.generation.run_job --input=prompts.jsonl --output_dir=out/ \
      --openai_base_url=http://127.0.0.1:8000/v1 --openai_model=qwen2-7b-instruct

Re-running the same command after a crash continues where it stopped, and generates again the
records whose request failed (recorded in failures-NNNNN.jsonl; see `job.py`).
"""

from __future__ import annotations

from absl import app, flags

from langshift.generation.interface import GenerationOptions
from langshift.generation.job import EndpointUnavailable, JobConfig, run_generation_job

_INPUT = flags.DEFINE_string("input", None, "JSONL with `prompt` or `messages` per record.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where part-NNNNN.jsonl shards go.")
_MODEL_DIR = flags.DEFINE_string("model_dir", None, "Hugging Face checkpoint directory.")
_OPENAI_URL = flags.DEFINE_string("openai_base_url", None, "OpenAI-compatible server (…/v1).")
_OPENAI_MODEL = flags.DEFINE_string("openai_model", "default", "Model name on that server.")
_CONCURRENCY = flags.DEFINE_integer("max_concurrency", 8, "Requests in flight to the server.")
_RETRIES = flags.DEFINE_integer("max_retries", 3, "Retries of a transient request failure.")
_TIMEOUT = flags.DEFINE_float("timeout_s", 120.0, "Per-request timeout (server backend).")
_MAX_NEW = flags.DEFINE_integer("max_new_tokens", 256, "Tokens to generate per record.")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.0, "0 = greedy.")
_TOP_K = flags.DEFINE_integer("top_k", 0, "0 = off.")
_TOP_P = flags.DEFINE_float("top_p", 1.0, "1 = off.")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Records per generation call.")
_SHARD = flags.DEFINE_integer("shard_size", 1000, "Records per output shard.")
_WORKER = flags.DEFINE_integer("worker_index", 0, "This worker's index (multi-host jobs).")
_WORKERS = flags.DEFINE_integer("num_workers", 1, "Number of workers sharing the input.")
_ID_FIELD = flags.DEFINE_string("id_field", "id", "Unique record key that outputs are matched by.")
_OUTPUT_FIELD = flags.DEFINE_string("output_field", "completion", "Field of the generated text.")
_GENERATOR = flags.DEFINE_string("generator_name", None, "Recorded in outputs' `generator`.")
_RULE_ADAPTER = flags.DEFINE_enum(
    "rule_adapter",
    None,
    ["all", "no_eos", "no_uniform", "no_diversity"],
    "Local backend: decode through Hewitt et al. 2024's rule-based adapter (arXiv:2409.14254), "
    "or one of its ablations (each without one rule).",
)
_RULE_NEGATIVE_BIAS = flags.DEFINE_float(
    "rule_negative_bias", -4.0, "The adapter's negative uniform token bias."
)


def main(argv):
  del argv
  # pylint: disable=import-outside-toplevel
  if _RULE_ADAPTER.value and not _MODEL_DIR.value:
    raise app.UsageError("--rule_adapter needs the local backend (--model_dir)")
  if _OPENAI_URL.value:
    from langshift.generation.openai_client import OpenAIGenerator

    generator = OpenAIGenerator(
        _OPENAI_URL.value,
        _OPENAI_MODEL.value,
        max_concurrency=_CONCURRENCY.value,
        max_retries=_RETRIES.value,
        timeout_s=_TIMEOUT.value,
    )
  elif _MODEL_DIR.value:
    from langshift.checkpoints.hf_import import load_hf_model
    from langshift.generation.local_backend import LocalGenerator
    from langshift.generation.logits_processors import rule_based_adapter
    from langshift.tokenization.tokenizer import load_tokenizer

    config, params = load_hf_model(_MODEL_DIR.value)
    tokenizer = load_tokenizer(_MODEL_DIR.value)
    processors = ()
    if _RULE_ADAPTER.value:
      processors = (rule_based_adapter(tokenizer, _RULE_ADAPTER.value, _RULE_NEGATIVE_BIAS.value),)
    generator = LocalGenerator(
        config, params, tokenizer, batch_size=_BATCH.value, processors=processors
    )
  else:
    raise app.UsageError("give --model_dir or --openai_base_url")
  options = GenerationOptions(
      max_new_tokens=_MAX_NEW.value,
      temperature=_TEMPERATURE.value,
      top_k=_TOP_K.value,
      top_p=_TOP_P.value,
      seed=_SEED.value,
  )
  cfg = JobConfig(
      shard_size=_SHARD.value,
      batch_size=_BATCH.value,
      worker_index=_WORKER.value,
      num_workers=_WORKERS.value,
      id_field=_ID_FIELD.value,
      output_field=_OUTPUT_FIELD.value,
      generator_name=_GENERATOR.value,
  )
  try:
    result = run_generation_job(_INPUT.value, _OUTPUT_DIR.value, generator, options, cfg)
  except EndpointUnavailable as e:
    raise SystemExit(f"run_job: {e}") from None
  print(
      f"{_OUTPUT_DIR.value}: wrote {result.written} records, {result.failed} failed"
      + (" (rerun to retry; see failures-*.jsonl)" if result.incomplete_shards else "")
  )


if __name__ == "__main__":
  flags.mark_flags_as_required(["input", "output_dir"])
  app.run(main)
