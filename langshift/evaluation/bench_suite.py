r"""Time and peak memory of a training-time suite evaluation on a Hugging Face checkpoint.

Reproduces the evaluation a native-alignment CPU run does before its first step (two Arabic
choice tasks of the handbook suite, 8 examples each, base protocol with their few-shot prompts):

  python -m langshift.evaluation.bench_suite --model_dir=.cache/smollm2-135m-instruct \
      --suite=handbook_mini --tasks=translation_ar,continuation_ar --max_examples=8

Prints the metrics, the wall time of the first call (compilation included) and of a second call
(what every later evaluation costs), and the process's peak resident memory. Figures and machine:
docs/evaluation.md.
"""

from __future__ import annotations

import dataclasses
import time

from absl import app, flags

from langshift import memory

_MODEL_DIR = flags.DEFINE_string("model_dir", None, "Hugging Face checkpoint directory.")
_SUITE = flags.DEFINE_string("suite", "handbook_mini", "Suite JSON path or built-in name.")
_TASKS = flags.DEFINE_list("tasks", ["translation_ar", "continuation_ar"], "Tasks to run.")
_MAX_EXAMPLES = flags.DEFINE_integer("max_examples", 8, "Examples per task.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 8, "Rows per forward pass.")


def main(argv):
  del argv
  # pylint: disable=import-outside-toplevel
  from langshift.checkpoints.hf_import import load_hf_model
  from langshift.evaluation.harness import run_eval_suite
  from langshift.evaluation.tasks import load_suite, resolve_suite_path
  from langshift.tokenization.tokenizer import load_tokenizer

  config, params = load_hf_model(_MODEL_DIR.value)
  tokenizer = load_tokenizer(_MODEL_DIR.value)
  suite = load_suite(resolve_suite_path(_SUITE.value), max_examples=_MAX_EXAMPLES.value)
  suite = dataclasses.replace(suite, tasks=tuple(t for t in suite.tasks if t.name in _TASKS.value))
  for attempt in ("first", "second"):
    start = time.perf_counter()
    metrics = run_eval_suite(
        suite, config=config, params=params, tokenizer=tokenizer, batch_size=_BATCH_SIZE.value
    )
    print(f"{attempt} call: {time.perf_counter() - start:.1f} s")
  for name in sorted(metrics):
    print(f"{name}\t{metrics[name]:.4f}")
  peak_gib = memory.process_peak_bytes() / memory.GIB
  print(f"peak resident memory: {peak_gib:.2f} GiB")


if __name__ == "__main__":
  flags.mark_flags_as_required(["model_dir"])
  app.run(main)
