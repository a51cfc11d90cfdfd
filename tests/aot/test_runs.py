"""langshift.aot.runs: the programs each published setting runs, read from its config (no
compilation): the recipes' secondary training runs at their own settings, local generation roles,
the scorer; and the LoRA targets of LEP's first-and-last-layer calibration."""

import importlib.util
import os

from langshift.aot import compile as compile_lib
from langshift.aot import runs as runs_lib

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def config(name, arg=None):
  spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "experiments", name))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def names(runs):
  return [(type(r).__name__, r.name, r.model_key) for r in runs]


def test_native_alignment_trains_the_worker_rewrites_locally_then_trains_the_student():
  runs = runs_lib.runs(config("native_align_ar.py"))
  assert names(runs) == [
      ("TrainingRun", "worker SFT", "native_align.worker_init"),
      ("GenerationRun", "corpus rewrite (worker)", "native_align.worker_init"),
      ("TrainingRun", "student CPT", "init_from_hf"),
  ]  # the expert is served (backend openai): nothing of it compiles here
  sft, rewrite, student = runs
  # Each at its own settings, fitted to v4-32 (docs/benchmarks.md).
  assert runs_lib.describe(sft)["batch"] == 128 and runs_lib.describe(student)["batch"] == 256
  assert runs_lib.describe(sft)["microbatches"] == runs_lib.describe(student)["microbatches"] == 4
  assert (rewrite.batch_size, rewrite.max_input_tokens, rewrite.max_new_tokens) == (32, 1024, 1536)


def test_lep_calibration_is_lora_on_the_first_and_last_layers_at_its_own_batch():
  runs = runs_lib.runs(config("lep_ru.py", "calibrate"))
  assert names(runs) == [
      ("TrainingRun", "embedding CPT", "lep.base"),
      ("GenerationRun", "calibration answers", "lep.instruct"),
      ("TrainingRun", "calibration", "lep.instruct"),
      ("ScoringRun", "evaluate", "lep.instruct"),
  ]
  cpt, _, calibration, _ = runs
  assert cpt.train.trainable == "embeddings"
  assert runs_lib.describe(calibration) == {
      "batch": 64,
      "seq_len": 8096,
      "microbatches": 1,
      "trainable": "lora",
      "dtype": "bfloat16",
      "param_dtype": "float32",
      "remat": "full",
      "lora_rank": 8,
  }
  assert calibration.lora_layers == (0, -1) and not calibration.model.scan_layers
  targets = compile_lib.lora_layer_targets(("attention",), (0, -1), 32)
  assert targets == (
      "^layers_0/(.*/)?self_attn/[qkvo]_proj/kernel$",
      "^layers_31/(.*/)?self_attn/[qkvo]_proj/kernel$",
  )


def test_the_other_recipes():
  assert names(runs_lib.runs(config("inscp_zh_tw.py"))) == [
      ("ScoringRun", "perplexity selection", "inscp.instruct"),  # ppl <= 15 selection
      ("TrainingRun", "InsCP train", "inscp.instruct"),
  ]
  assert names(runs_lib.runs(config("noninstruct.py"))) == [
      ("TrainingRun", "SFT", "init_from_hf")  # the teacher is served
  ]
  assert names(runs_lib.runs(config("pinch.py"))) == [
      ("TrainingRun", "instruction tuning", "init_from_hf"),
      ("GenerationRun", "evaluate responses", "init_from_hf"),
  ]
  assert names(runs_lib.runs(config("demo.py"))) == [("TrainingRun", "train", "init_from_hf")]
