"""Standalone evaluation of a Hugging Face checkpoint directory on a suite.

  python -m langshift.evaluation.run --model_dir=/ckpt/smollm2-135m-instruct --suite=handbook_mini
  python -m langshift.evaluation.run --model_dir=... --suite=my/suite.json --protocol=base \
      --num_fewshot=5 --max_examples=50 --output=/tmp/metrics.json
  python -m langshift.evaluation.run --model_dir=... --suite=darumeru --data_dir=/data/darumeru

Scoring follows lm-evaluation-harness's conventions (docs/evaluation.md): BOS as the tokenizer
adds it unless `--bos` forces it, whole-answer log-likelihoods, rolling-window perplexity. The
settings are written with the metrics (`eval/settings/*`).

Generation tasks may go to an OpenAI-compatible server instead (`--openai_base_url`,
`--openai_model`); choice and perplexity tasks need the local weights.
"""

from __future__ import annotations

import json

from absl import app, flags, logging

from langshift.evaluation.harness import run_eval_suite

_MODEL_DIR = flags.DEFINE_string("model_dir", None, "Hugging Face checkpoint directory.")
_SUITE = flags.DEFINE_string("suite", "handbook_mini", "Suite JSON path or built-in suite name.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Folder of the suite's task files (suites that read files you supply)."
)
_PROTOCOL = flags.DEFINE_enum(
    "protocol",
    "auto",
    ["auto", "base", "instruct"],
    "base: plain-text prompts; instruct: through the chat template; auto: instruct when the "
    "tokenizer has a chat template.",
)
_NUM_FEWSHOT = flags.DEFINE_integer(
    "num_fewshot",
    None,
    "Demonstrations for every task (default: each task's own count under the base protocol, none "
    "under the instruct protocol).",
)
_BOS = flags.DEFINE_enum(
    "bos", "auto", ["auto", "true", "false"], "Prepend BOS as the tokenizer does, always or never."
)
_MAX_LENGTH = flags.DEFINE_integer(
    "max_length", None, "Tokens per forward pass: perplexity window, prompt truncation limit."
)
_STRIDE = flags.DEFINE_integer(
    "stride", None, "Tokens predicted per perplexity window after the first (default max_length)."
)
_MAX_EXAMPLES = flags.DEFINE_integer("max_examples", None, "Cap on examples per task.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 8, "Rows per forward pass / generation batch.")
_DTYPE = flags.DEFINE_string("dtype", None, "Compute dtype override (e.g. bfloat16).")
_SEED = flags.DEFINE_integer("seed", 0, "Few-shot selection and sampling seed.")
_OUTPUT = flags.DEFINE_string("output", None, "Write the metrics here as JSON.")
_LOG_SAMPLES = flags.DEFINE_string(
    "log_samples", None, "Write one JSON line per scored example here (prompts, scores, outputs)."
)
_OPENAI_URL = flags.DEFINE_string(
    "openai_base_url", None, "OpenAI-compatible server (…/v1) for generation tasks."
)
_OPENAI_MODEL = flags.DEFINE_string("openai_model", None, "Model name on that server.")
_CHAT_TEMPLATE = flags.DEFINE_string(
    "chat_template",
    None,
    "The instruct protocol's template in place of the checkpoint's: a built-in name (llama3, "
    "mistral, openchat, tulu, chatml) or a jinja string (a langshift export already carries "
    "its run's data.chat_template).",
)


def evaluate_model_dir(
    model_dir: str | None,
    suite: str,
    *,
    protocol: str = "auto",
    num_fewshot: int | None = None,
    bos: str = "auto",
    max_length: int | None = None,
    stride: int | None = None,
    data_dir: str | None = None,
    max_examples: int | None = None,
    batch_size: int = 8,
    dtype: str | None = None,
    seed: int = 0,
    openai_base_url: str | None = None,
    openai_model: str | None = None,
    samples: list | None = None,
    chat_template: str | None = None,
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
    tokenizer = load_tokenizer(model_dir, chat_template=chat_template)
    scorer = LocalScorer(
        config,
        params,
        tokenizer,
        batch_size=batch_size,
        bos=bos,
        max_length=max_length,
        stride=stride,
    )
    generator = LocalGenerator(
        config, params, tokenizer, batch_size=batch_size, add_bos=scorer.add_bos
    )
  if openai_base_url:
    generator = OpenAIGenerator(openai_base_url, openai_model or "default")
  if scorer is None and generator is None:
    raise ValueError("give --model_dir and/or --openai_base_url")
  if protocol == "auto":
    has_template = tokenizer is not None and bool(getattr(tokenizer, "chat_template", None))
    protocol = "instruct" if has_template or tokenizer is None else "base"
  logging.info(
      "evaluating on %s with the %s protocol, BOS %s",
      suite,
      protocol,
      "on" if scorer is not None and scorer.add_bos else "off",
  )
  return run_eval_suite(
      suite,
      scorer=scorer,
      generator=generator,
      chat=protocol == "instruct",
      seed=seed,
      max_examples=max_examples,
      num_fewshot=num_fewshot,
      data_dir=data_dir,
      samples=samples,
  )


def main(argv):
  del argv
  samples = [] if _LOG_SAMPLES.value else None
  results = evaluate_model_dir(
      _MODEL_DIR.value,
      _SUITE.value,
      protocol=_PROTOCOL.value,
      num_fewshot=_NUM_FEWSHOT.value,
      bos=_BOS.value,
      max_length=_MAX_LENGTH.value,
      stride=_STRIDE.value,
      data_dir=_DATA_DIR.value,
      max_examples=_MAX_EXAMPLES.value,
      batch_size=_BATCH_SIZE.value,
      dtype=_DTYPE.value,
      seed=_SEED.value,
      openai_base_url=_OPENAI_URL.value,
      openai_model=_OPENAI_MODEL.value,
      samples=samples,
      chat_template=_CHAT_TEMPLATE.value,
  )
  for name in sorted(results):
    print(f"{name}\t{results[name]:.4f}")
  if _OUTPUT.value:
    with open(_OUTPUT.value, "w", encoding="utf-8") as f:
      json.dump(results, f, indent=1, sort_keys=True)
  if _LOG_SAMPLES.value:
    with open(_LOG_SAMPLES.value, "w", encoding="utf-8") as f:
      f.writelines(json.dumps(s, ensure_ascii=False) + "\n" for s in samples)


if __name__ == "__main__":
  app.run(main)
