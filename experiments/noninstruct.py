"""Non-instructional fine-tuning (Xie, Syu & Lee 2024, arXiv:2409.00096): a teacher continues the
first half of ordinary documents and a base model is fine-tuned on (first half -> continuation).

Default: the published setting — a Mistral-7B base student, the teacher behind an
OpenAI-compatible endpoint, documents from any JSONL/Parquet corpus with a "text" field (the
OpenWebText layout) — sized for one 8 x H100 node (`config.mesh.target`, the target
`python -m langshift.aot` checks). Paths are yours (nothing is downloaded):

  python -m langshift.main --config=experiments/noninstruct.py --workdir=workdir/noninstruct \\
      --config.init_from_hf=/models/Mistral-7B-v0.1 \\
      --config.noninstruct.corpus.path='/corpora/openwebtext/*.jsonl' \\
      --config.noninstruct.teacher.base_url=http://teacher-host:8000/v1 \\
      --config.noninstruct.teacher.model=<served model name>

Outputs: workdir/{split, teacher, pairs, sft, export, evaluate}; sft/hf is the tuned student
(merged), sft/hf_adapter its PEFT adapter when tuning=lora.

The paper's evaluations: the Open LLM suite through lm-eval before and after SFT
(`config.evals.open_llm`: each task at the leaderboard's shots; lm-eval fetches the data on a
machine with access, or give `--config.evals.open_llm.include_path=` a folder of task YAMLs over
local files), and MT-Bench and Arena-Hard of the tuned student from the published files and a
judge (not run unless given):

      --config.noninstruct.evaluate.mt_bench.questions=/mt_bench/question.jsonl \
      --config.noninstruct.evaluate.mt_bench.judge_prompts=/mt_bench/judge_prompts.jsonl \
      --config.noninstruct.evaluate.mt_bench.references=/mt_bench/reference_answer/gpt-4.jsonl \
      --config.noninstruct.evaluate.mt_bench.judge.base_url=http://judge-host:8000/v1 \
      --config.noninstruct.evaluate.arena_hard.questions=/arena-hard/question.jsonl \
      --config.noninstruct.evaluate.arena_hard.baseline=/arena-hard/model_answer/gpt-4-0314.jsonl \
      --config.noninstruct.evaluate.arena_hard.judge.base_url=http://judge-host:8000/v1
Arguments (`--config=experiments/noninstruct.py:<arg>`, comma-separated):
  size=cpu     SmolLM2-135M-Instruct as teacher and student on the English Debian handbook
               (en-US, prepared by launch/setup_env.sh), every stage on 2 CPU cores.
  size=tiny    seconds per stage on tiny models the tests create (give their paths).
  tuning=lora|full   LoRA (r 16, alpha 32 on attention and MLP; default) or every parameter.
  unit=token|word|char   the split unit (the paper leaves it open).
  teacher=openai|local   where the teacher runs (cpu and tiny default to local).
  mode=response_tuning   Hewitt et al. 2024's baseline (arXiv:2409.14254, Sec. 3): the corpus's
               responses behind an empty instruction, loss on the response (their LIMA setting:
               LR 1e-5, batch 64, max length 2048, all parameters); no teacher.
`sweep()`: LoRA vs full, the split unit, the teacher backend.

The paper's training hyper-parameters beyond the method are not restated here; LR 2e-4 for
LoRA and 2e-5 for full fine-tuning, 3 epochs' worth of steps, are langshift's choice
(docs/recipes.md).

Rehearsal of this default, every stage on tiny random models of the same kinds, in minutes
on a CPU (sizes: `REHEARSAL_SIZES` below; docs/recipes.md "Rehearsals"):

  python -m langshift.rehearse --config=experiments/noninstruct.py \\
      --workdir=/tmp/rehearse/noninstruct
"""

from langshift import config_lib
from langshift.evaluation.evaluators import lm_eval_tasks
from langshift.recipes.non_instructional import noninstruct_config
from langshift.train.config import base_config

CORPUS = ".cache/corpora/debian_handbook/en-US"
SMOLLM2 = ".cache/smollm2-135m-instruct"
ARGS = dict(
    size=("full", "cpu", "tiny"),
    tuning=("lora", "full"),
    unit=("token", "word", "char"),
    teacher=("default", "openai", "local"),
    mode=("continuation", "response_tuning"),
)

# The rehearsal of the default (docs/recipes.md "Rehearsals"): the sizes it shrinks, numbers
# only; all else stays as published but the paths and endpoints the rehearsal fills.
REHEARSAL_SIZES = {
    "noninstruct.max_documents": 8,
    "noninstruct.heldout_prompts": 2,
    "noninstruct.evaluate.max_judge_prompts": 2,
    "evals.open_llm.limit": 2.0,
    "noninstruct.teacher.batch_size": 4,
    "noninstruct.teacher.max_concurrency": 4,
    "train.steps": 2,
    "train.global_batch_size": 4,
    "train.seq_len": 256,
    "train.log_every": 1,
    "optimizer.warmup_steps": 1,
    "checkpoint.every_steps": 2,
    "mesh.num_devices": 1,
}


# The Open LLM Leaderboard's suite as Xie et al. 2024 report it, each task at the leaderboard's
# number of demonstrations (lm-eval 0.4.13 task names; docs/evaluation.md).
OPEN_LLM_TASKS = "arc_challenge:25,hellaswag:10,mmlu:5,truthfulqa_mc2:0,winogrande:5,gsm8k:5"


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, **ARGS)
  c = base_config()
  c.recipe = "noninstruct"
  c.noninstruct = noninstruct_config()
  n = c.noninstruct
  n.mode = arg.mode
  n.corpus.update(path="", format="jsonl", text_field="text")
  n.split.update(unit=arg.unit, min_units=64, max_units=1024)
  n.teacher.update(
      backend="openai", max_new_tokens=1024, temperature=0.0, batch_size=64, max_concurrency=32
  )
  # A base model has no chat template: the pairs are rendered in Mistral's [INST] format, and so
  # are the held-out and judged answers of the student before and after; sft/hf ships it.
  c.data.chat_template = "mistral"
  c.data.packing = "greedy"
  c.model.update(dtype="bfloat16", param_dtype="float32", remat_policy="full")
  c.train.update(steps=3000, global_batch_size=64, seq_len=2048, log_every=20)
  c.optimizer.update(learning_rate=2e-4, warmup_steps=100, schedule="cosine", weight_decay=0.0)
  c.checkpoint.update(every_steps=500, keep=2, export_hf_at_end=True, export_dtype="bfloat16")
  c.mesh.ici.update(data=1, fsdp=-1, tensor=1)
  # Before (at_start) and after SFT, in the sft stage's summary (`eval/<task>/<metric>_after`).
  c.evals.open_llm = lm_eval_tasks(tasks=OPEN_LLM_TASKS, at_start=True)
  if arg.tuning == "lora":
    c.train.trainable = "lora"
    c.train.lora.update(rank=16, alpha=32.0, dropout=0.05, targets=("attention", "mlp"))
    c.model.param_dtype = "bfloat16"  # the frozen base in bf16; adapters stay fp32
  else:
    c.train.trainable = "all"
    c.optimizer.update(learning_rate=2e-5, mu_dtype="bfloat16")
  if arg.mode == "response_tuning":
    # Hewitt et al. 2024, Sec. 3: LIMA responses, LR 1e-5, batch 64, max length 2048, full.
    c.train.update(trainable="all", global_batch_size=64, seq_len=2048, steps=150)
    c.optimizer.update(learning_rate=1e-5, warmup_steps=10, weight_decay=0.0)
  # Sized for one 8 x H100 node (docs/benchmarks.md, `python -m langshift.aot`).
  c.mesh.target = "h100x8" if arg.size == "full" else ""
  if arg.size == "cpu":
    _cpu(c)
  elif arg.size == "tiny":
    _tiny(c)
  if arg.teacher != "default":
    n.teacher.backend = arg.teacher
    if arg.teacher == "local" and not n.teacher.hf_dir:
      n.teacher.hf_dir = SMOLLM2
  return c


def _cpu(c):
  """SmolLM2-135M-Instruct as teacher and student on the English handbook; <= 15 minutes on 2
  cores. Sized by the teacher's decoding, the slow part on a CPU."""
  n = c.noninstruct
  del c.evals["open_llm"]  # offline: the suite's data is not local
  c.init_from_hf = SMOLLM2
  c.data.chat_template = "tokenizer"  # SmolLM2's ChatML
  n.corpus.path = f"{CORPUS}/train.jsonl"
  n.heldout.update(path=f"{CORPUS}/heldout.jsonl", format="jsonl", text_field="text")
  n.update(max_documents=48, heldout_prompts=8, heldout_max_new_tokens=48, heldout_language="en")
  n.split.update(min_units=48, max_units=192)
  n.teacher.update(
      backend="local",
      hf_dir=SMOLLM2,
      dtype="float32",
      max_new_tokens=96,
      max_input_tokens=256,
      batch_size=24,
      shard_size=24,
  )
  c.model.update(dtype="float32", param_dtype="float32", remat_policy="none")
  c.train.update(steps=12, global_batch_size=4, seq_len=256, log_every=2, loss_chunk_size=0)
  c.optimizer.update(warmup_steps=2, mu_dtype="")
  if c.train.trainable == "lora":
    c.train.lora.update(rank=8, alpha=16.0, dropout=0.0)
    c.optimizer.learning_rate = 1e-3
  else:
    c.optimizer.learning_rate = 5e-5
  c.checkpoint.update(every_steps=12, keep=1, export_dtype="float32")


def _tiny(c):
  """Seconds per stage; the tests give init_from_hf, the corpus and the teacher."""
  n = c.noninstruct
  del c.evals["open_llm"]
  c.data.chat_template = "tokenizer"
  n.update(max_documents=0, heldout_prompts=4, heldout_max_new_tokens=8)
  n.split.update(min_units=8, max_units=512)
  n.teacher.update(
      dtype="float32",
      max_new_tokens=12,
      max_input_tokens=128,
      batch_size=4,
      shard_size=8,
      max_concurrency=4,
      timeout_s=30.0,
  )
  c.model.update(dtype="float32", param_dtype="float32", remat_policy="none")
  c.train.update(steps=3, global_batch_size=4, seq_len=64, log_every=1, loss_chunk_size=0)
  c.train.lora.update(rank=4, alpha=8.0, dropout=0.0)
  c.optimizer.update(learning_rate=1e-3, warmup_steps=1, mu_dtype="")
  c.checkpoint.update(every_steps=2, keep=1, export_dtype="float32", async_save=False)
  c.mesh.num_devices = 1


def sweep():
  """LoRA vs full fine-tuning, the split unit, and the teacher backend."""
  tuning = [
      {"train.trainable": "lora"},
      {"train.trainable": "all", "optimizer.learning_rate": 2e-5, "model.param_dtype": "float32"},
  ]
  units = [{"noninstruct.split.unit": u} for u in ("word", "char")]
  teachers = [{"noninstruct.teacher.backend": "local", "noninstruct.teacher.hf_dir": SMOLLM2}]
  return tuning + units + teachers
