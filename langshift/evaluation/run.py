"""Standalone evaluation of a Hugging Face checkpoint directory on a suite.

  python -m langshift.evaluation.run --model_dir=/ckpt/smollm2-135m-instruct --suite=mini_darumeru
  python -m langshift.evaluation.run --model_dir=... --suite=my/suite.json --protocol=base \
      --max_examples=50 --output=/tmp/metrics.json

Generation tasks may go to an OpenAI-compatible server instead (`--openai_base_url`,
`--openai_model`); choice and perplexity tasks need the local weights.
"""

from __future__ import annotations

import json

from absl import app, flags, logging

from langshift.evaluation.harness import run_eval_suite

_MODEL_DIR = flags.DEFINE_string("model_dir", None, "Hugging Face checkpoint directory.")
_SUITE = flags.DEFINE_string("suite", "mini_darumeru", "Suite JSON path or built-in suite name.")
_PROTOCOL = flags.DEFINE_enum(
    "protocol",
    "auto",
    ["auto", "base", "instruct"],
    "base: k-shot prompts; instruct: zero-shot through the chat "
    "template; auto: instruct when the tokenizer has a chat template.",
)
_MAX_EXAMPLES = flags.DEFINE_integer("max_examples", None, "Cap on examples per task.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 8, "Rows per forward pass / generation batch.")
_DTYPE = flags.DEFINE_string("dtype", None, "Compute dtype override (e.g. bfloat16).")
_SEED = flags.DEFINE_integer("seed", 0, "Few-shot selection and sampling seed.")
_OUTPUT = flags.DEFINE_string("output", None, "Write the metrics here as JSON.")
_OPENAI_URL = flags.DEFINE_string(
    "openai_base_url", None, "OpenAI-compatible server (…/v1) for generation tasks."
)
_OPENAI_MODEL = flags.DEFINE_string("openai_model", None, "Model name on that server.")


def evaluate_model_dir(
    model_dir: str | None,
    suite: str,
    *,
    protocol: str = "auto",
    max_examples: int | None = None,
    batch_size: int = 8,
    dtype: str | None = None,
    seed: int = 0,
    openai_base_url: str | None = None,
    openai_model: str | None = None,
) -> dict[str, float]:
  """Loads the checkpoint (and/or connects to the server) and runs the suite."""
  # pylint: disable=import-outside-toplevel
  from langshift.evaluation.scoring import LocalScorer
  from langshift.generation.local_backend import LocalGenerator
  from langshift.generation.openai_client import OpenAIGenerator
  from langshift.tokenization.tokenizer import load_tokenizer

  scorer = generator = tokenizer = None
  if model_dir:
    from langshift.checkpoints.hf_import import load_hf_model

    overrides = {"dtype": dtype} if dtype else {}
    config, params = load_hf_model(model_dir, **overrides)
    tokenizer = load_tokenizer(model_dir)
    scorer = LocalScorer(config, params, tokenizer, batch_size=batch_size)
    generator = LocalGenerator(config, params, tokenizer, batch_size=batch_size)
  if openai_base_url:
    generator = OpenAIGenerator(openai_base_url, openai_model or "default")
  if scorer is None and generator is None:
    raise ValueError("give --model_dir and/or --openai_base_url")
  if protocol == "auto":
    has_template = tokenizer is not None and bool(getattr(tokenizer, "chat_template", None))
    protocol = "instruct" if has_template or tokenizer is None else "base"
  logging.info("evaluating on %s with the %s protocol", suite, protocol)
  return run_eval_suite(
      suite,
      scorer=scorer,
      generator=generator,
      chat=protocol == "instruct",
      seed=seed,
      max_examples=max_examples,
  )


def main(argv):
  del argv
  results = evaluate_model_dir(
      _MODEL_DIR.value,
      _SUITE.value,
      protocol=_PROTOCOL.value,
      max_examples=_MAX_EXAMPLES.value,
      batch_size=_BATCH_SIZE.value,
      dtype=_DTYPE.value,
      seed=_SEED.value,
      openai_base_url=_OPENAI_URL.value,
      openai_model=_OPENAI_MODEL.value,
  )
  for name in sorted(results):
    print(f"{name}\t{results[name]:.4f}")
  if _OUTPUT.value:
    with open(_OUTPUT.value, "w", encoding="utf-8") as f:
      json.dump(results, f, indent=1, sort_keys=True)


if __name__ == "__main__":
  app.run(main)
