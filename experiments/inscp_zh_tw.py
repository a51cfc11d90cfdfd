"""InsCP into Traditional Chinese (Chen & Lee 2024, "InstructionCP: A fast approach to transfer
Large Language Models into target language", arXiv:2405.20175): continual pre-training of an
instruct model on zh-TW text wrapped as the assistant reply behind an empty user turn of its own
chat template, optionally on the low-perplexity records only.

Default: the published setting, Llama-3-8B-Instruct on ~0.1B tokens of Traditional Chinese
(mostly question/answer text, each question and each answer its own sample: `qa_split`), data of
perplexity <= 15 under the model, sized for a TPU v4-32 slice (`config.mesh.target`, the slice
`python -m langshift.aot` checks; docs/benchmarks.md). Paths are yours (nothing is downloaded):

  python -m langshift.main --config=experiments/inscp_zh_tw.py --workdir=workdir/inscp_zh_tw \\
      --config.inscp.instruct=/models/Meta-Llama-3-8B-Instruct \\
      --config.data.sources.zh.path='/corpora/zh-TW/qa/*.jsonl' \\
      --config.evals.heldout.data.sources.zh.path=/corpora/zh-TW/heldout.jsonl \\
      --config.evals.alignment.prompts=/corpora/ted_zh_en_prompts.jsonl

The paper's evaluations: TruthfulQA, ToxiGen, ARC, HellaSwag and MMLU through lm-eval before and
after CPT (`config.evals.harness`, each task's lm-eval default shots; lm-eval fetches the data on a
machine with access, or give `--config.evals.harness.include_path=` a folder of task YAMLs over
local files), and MT-Bench of the starting and the adapted model from FastChat's files and a judge
(not run unless given: `--config.inscp.mt_bench.questions=.../question.jsonl`, `judge_prompts=`,
`references=`, `judge.base_url=`). C-Eval-TW and BOLD have no lm-eval task (TMMLU+ from its
published files is `inscp.tmmluplus.data_dir`).

The paper gives no optimiser settings. The learning rate is 2e-5, the value of full-parameter
fine-tuning of Llama models (Llama 2's SFT: LR 2e-5, cosine, weight decay 0.1, 64 x 4,096 =
262k tokens a step, Touvron et al. 2023, arXiv:2307.09288, Sec. 3.1; the same tokens per step as
here), because InsCP trains every weight of an instruct model whose chat and RLHF behaviour it
means to keep; LEP's 2e-4 (Tikhomirov & Chernyshev 2024, arXiv:2412.21140) is for training the
embeddings alone (on every weight, even 1e-4 made the CPU run's English answers collapse). The rest
follows LEP's continual pre-training: AdamW (0.9, 0.95), eps 1e-5, weight decay 0.1, cosine after
100 warm-up steps, 256 x 1024-token batches, bf16, one epoch of ~0.1B tokens = ~380 steps.

Arguments (`--config=experiments/inscp_zh_tw.py:<arg>`, comma-separated):
  size=cpu      SmolLM2-135M-Instruct on the offline zh-TW Debian handbook text, the prompt set
                and held-out text prepared by launch/setup_env.sh (<= ~10 minutes on 2 cores).
  size=tiny     seconds-long stages for the tests (give inscp.instruct and the data paths).
  variant=inscp       the wrapper, the template's own newline after the header (default)
  variant=orgcp       the baseline: the same data, no template
  variant=masked      InsCP with the header tokens masked from the loss (data.inscp.mask_header)
  variant=no_newline  InsCP with no newline after the assistant header
  variant=newline     InsCP with one newline after the assistant header
  ppl=<bound>   keep records of perplexity <= bound under the starting model (0: no selection;
                default 15 for size=full, none on CPU)
  start=lep     start from a finished LEP workdir's export (give inscp.lep_workdir): LEP's new
                tokenizer and propagated embeddings, then InsCP.
`sweep()`: the four variants and the perplexity thresholds.

Rehearsal of this default, every stage on tiny random models of the same kinds, in minutes
on a CPU (sizes: `REHEARSAL_SIZES` below; docs/recipes.md "Rehearsals"):

  python -m langshift.rehearse --config=experiments/inscp_zh_tw.py \\
      --workdir=/tmp/rehearse/inscp_zh_tw
"""

from langshift import config_lib
from langshift.data.config import default_data_config, source_config
from langshift.evaluation.evaluators import (
    lm_eval_tasks,
    perplexity_eval,
    response_eval,
    suite_eval,
)
from langshift.recipes.inscp import inscp_config
from langshift.train.config import base_config

CORPUS = ".cache/corpora/inscp/zh-TW"
SMOLLM2 = ".cache/smollm2-135m-instruct"
VARIANTS = ("inscp", "orgcp", "masked", "no_newline", "newline")
# Perplexity bounds of the sweep: <= 15 is the paper's low-perplexity selection; <= 30 keeps the
# same records plus those between 15 and 30 (a superset: a looser selection, to see how the bound
# matters), not the paper's high-perplexity data, which would be the records above a bound.
THRESHOLDS = (15.0, 30.0)
# Full-parameter training of an instruct model (see the docstring): not LEP's embedding-only 2e-4.
LEARNING_RATE = 2e-5
ARGS = dict(size=("full", "cpu", "tiny"), variant=VARIANTS, ppl=-1.0, start=("instruct", "lep"))
# The paper's safety and knowledge benchmarks by their lm-eval 0.4.13 names (docs/evaluation.md).
LM_EVAL_TASKS = "truthfulqa_mc2,toxigen,arc_easy,arc_challenge,hellaswag,mmlu"

# The rehearsal of the default (docs/recipes.md "Rehearsals"): the sizes it shrinks, numbers
# only; all else stays as published but the paths and endpoints the rehearsal fills.
REHEARSAL_SIZES = {
    "train.steps": 2,
    "train.global_batch_size": 4,
    "train.seq_len": 128,
    "train.loss_chunk_size": 64,
    "train.log_every": 1,
    "optimizer.warmup_steps": 1,
    "checkpoint.every_steps": 2,
    "evals.heldout.every_steps": 2,
    "evals.heldout.max_batches": 1,
    "evals.alignment.max_examples": 2,
    "evals.alignment.batch_size": 4,
    "evals.harness.limit": 2.0,
    "inscp.score.batch_size": 4,
    "inscp.score.shard_size": 8,
    "inscp.tmmluplus.batch_size": 4,
    "inscp.judge.max_prompts": 1,
    "inscp.judge.batch_size": 4,
    "inscp.mt_bench.batch_size": 4,
    "mesh.num_devices": 1,
}
# A random model's perplexity is about its vocabulary's size: the bound of 15 would keep nothing.
# The scoring and selection stages run; this bound keeps every record.
REHEARSAL_STANDINS = {"inscp.max_perplexity": 1e9}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, **ARGS)
  c = base_config()
  c.recipe = "inscp"
  c.inscp = inscp_config()
  # What the recipe needs from the engine (checked, see inscp.REQUIRED_SETTINGS): every
  # parameter trains, and the adapted chat model is exported.
  c.train.trainable = "all"
  c.checkpoint.update(export_hf_at_end=True, export_dtype="bfloat16", every_steps=100, keep=2)
  # The paper leaves them open: a full-parameter fine-tuning LR, LEP's other CPT values.
  c.optimizer.update(
      learning_rate=LEARNING_RATE,
      schedule="cosine",
      warmup_steps=100,
      b1=0.9,
      b2=0.95,
      eps=1e-5,
      weight_decay=0.1,
  )
  c.train.update(steps=380, global_batch_size=256, seq_len=1024, log_every=10, loss_chunk_size=1024)
  c.model.update(dtype="bfloat16", param_dtype="float32", remat_policy="full")
  c.data.sources.zh = source_config(path="", format="jsonl", qa_split=True)
  c.data.packing = "greedy"  # whole wrapped samples, each behind its own empty user turn
  heldout = default_data_config()
  heldout.sources.zh = source_config(path="", format="jsonl")
  heldout.packing = "greedy"
  c.evals.heldout = perplexity_eval(data=heldout, every_steps=100, max_batches=8)
  # The headline metric: the share of answers in the prompt's language (zh-TW and English).
  c.evals.alignment = response_eval(
      prompts="", max_examples=0, max_new_tokens=128, at_start=True, prefix="align"
  )
  # The paper's benchmarks before (at_start) and after CPT, in the cpt stage's summary.
  c.evals.harness = lm_eval_tasks(tasks=LM_EVAL_TASKS, at_start=True)
  ppl = arg.ppl if arg.ppl >= 0 else 15.0
  if arg.size == "cpu":
    _cpu(c)
    ppl = arg.ppl if arg.ppl >= 0 else 0.0
  elif arg.size == "tiny":
    _tiny(c)
    ppl = arg.ppl if arg.ppl >= 0 else 0.0
  c.inscp.max_perplexity = ppl or None
  # Sized for a TPU v4-32 (docs/benchmarks.md, `python -m langshift.aot`): the step of 256 x 1,024
  # tokens takes 29.6 of 32 GiB per chip; on a v5e-16 it needs `--config.train.microbatches=8`
  # (15.1 of 16 GiB; 4 take 17.3).
  c.mesh.target = "v4-32" if arg.size == "full" else ""
  _variant(c, arg.variant)
  if arg.start == "lep":
    c.inscp.instruct = ""  # give inscp.lep_workdir
  return c


def _variant(c, variant):
  if variant == "orgcp":
    c.inscp.mode = "orgcp"
    c.data.sources.zh.template = "none"
    return
  c.data.sources.zh.template = "inscp"
  c.data.inscp.mask_header = variant == "masked"
  c.data.inscp.newline_after_header = {"no_newline": False, "newline": True}.get(variant)


def _cpu(c):
  """SmolLM2-135M-Instruct, full-parameter, on the handbook's Traditional Chinese paragraphs."""
  del c.evals["harness"]  # offline: the benchmarks' data is not local
  c.inscp.instruct = SMOLLM2
  c.data.sources.zh.update(path=f"{CORPUS}/train.jsonl", qa_split=False)
  c.evals.heldout.data.sources.zh.path = f"{CORPUS}/heldout.jsonl"
  c.evals.heldout.update(every_steps=0, max_batches=2)
  c.evals.alignment.update(
      prompts=f"{CORPUS}/prompts.jsonl", max_examples=12, max_new_tokens=32, batch_size=24
  )
  # Retention: multiple-choice tasks of the offline suite, through the chat template.
  c.evals.retention = suite_eval(
      suite="handbook_mini",
      tasks="continuation_zh-Hant,language_id",
      max_examples=8,
      chat=True,
      at_start=True,
      prefix="retention",
  )
  c.model.update(dtype="float32", remat_policy="none")
  c.train.update(steps=20, global_batch_size=4, seq_len=256, log_every=4, loss_chunk_size=0)
  # The published LR: the same full-parameter regime (1e-4 collapsed English answers here).
  c.optimizer.update(learning_rate=LEARNING_RATE, warmup_steps=4, mu_dtype="")
  c.checkpoint.update(every_steps=20, keep=1, export_dtype="float32")
  c.inscp.score.update(max_length=512, batch_size=16, shard_size=256)


def _tiny(c):
  """Seconds per stage; the tests give inscp.instruct, the corpus, held-out text and prompts."""
  del c.evals["harness"]
  c.model.update(dtype="float32", remat_policy="none")
  c.train.update(steps=2, global_batch_size=4, seq_len=64, log_every=1, loss_chunk_size=0)
  c.optimizer.update(learning_rate=1e-3, warmup_steps=1, mu_dtype="")
  c.checkpoint.update(every_steps=2, keep=1, export_dtype="float32", async_save=False)
  c.evals.heldout.update(every_steps=0, max_batches=1)
  c.evals.alignment.update(max_new_tokens=4, batch_size=4, max_examples=2)
  c.inscp.score.update(max_length=64, batch_size=4, shard_size=4)
  c.mesh.num_devices = 1


def sweep():
  """The paper's comparisons: orgCP vs InsCP, the header-mask and newline ablations, and the
  perplexity bounds of the data selection (<= 15 the paper's choice; <= 30 a looser bound that
  keeps the <= 15 data and more, not the paper's high-perplexity data)."""
  variants = [{"inscp.mode": "orgcp", "data.sources.zh.template": "none"}]
  variants += [{"data.sources.zh.template": "inscp"}]
  variants += [{"data.sources.zh.template": "inscp", "data.inscp.mask_header": True}]
  variants += [
      {"data.sources.zh.template": "inscp", "data.inscp.newline_after_header": n}
      for n in (False, True)
  ]
  thresholds = [{"inscp.max_perplexity": t} for t in THRESHOLDS]
  return variants + thresholds
