"""Native alignment of an Arabic student (Liang et al. 2024, "Alignment at Pre-training! Towards
Native Alignment for Arabic LLMs", arXiv:2412.03253): dedup -> expert rewrites a seed sample ->
filter -> worker SFT -> worker rewrites the corpus -> student CPT on the mix -> evaluation.

Default: the published setting — student Llama-3-8B, worker Qwen1.5-4B-Chat, a seed sample of
96k documents rewritten by an expert behind an OpenAI-compatible endpoint — on a TPU v4-32 slice
(16 chips; `slice=v5e-64` for 64 chips; `config.mesh.target`, the slice `python -m langshift.aot`
checks). Paths are yours (nothing is downloaded):

  python -m langshift.main --config=experiments/native_align_ar.py --workdir=gs-fuse/na_ar \\
      --config.init_from_hf=/models/Meta-Llama-3-8B \\
      --config.native_align.worker_init=/models/Qwen1.5-4B-Chat \\
      --config.native_align.corpus.path='/corpora/ar/*.jsonl' \\
      --config.native_align.expert.base_url=http://expert-host:8000/v1 \\
      --config.native_align.expert.model=<served model name> \\
      --config.evals.heldout.data.sources.ar.path=/corpora/ar_heldout.jsonl

Arguments (`--config=experiments/native_align_ar.py:<arg>`):
  size=cpu   SmolLM2-135M-Instruct as expert, worker and student, the Arabic Debian handbook
             (ar-MA, prepared by launch/setup_env.sh) as the corpus: every stage on 2 CPU cores.
  size=tiny  seconds per stage on tiny models the tests create (give their paths).
  slice=v5e-64  mesh and batch for a 64-chip v5e slice.
  suite=NAME    also run that benchmark suite (`config.evals.suite`, its Arabic tasks) before and
                after the student's CPT (minutes on a CPU: few-shot Arabic prompts are long).
  replay=A+B    declare replay sources A and B (empty paths, weight 1) for you to fill in.
`sweep()`: original only / rewritten only / hybrid at rewritten fractions 0.25, 0.5, 0.75, and
the amount of seed data for the worker.

Replay (optional). The paper pre-trains on the rewritten Arabic corpus mixed with general corpora
(SlimPajama, MAP-CC, Proof-Pile-2, Wikipedia); none is needed to run this setting. Replay sources
are `config.data.sources` entries (`langshift/data/config.py`) that join the student's CPT mix:

  python -m langshift.main --config=experiments/native_align_ar.py:replay=slimpajama+wikipedia \
      ... (as above) \
      --config.data.sources.slimpajama.path='/corpora/slimpajama/*.jsonl' \
      --config.data.sources.wikipedia.path='/corpora/wikipedia/*.jsonl' \
      --config.data.sources.wikipedia.weight=0.5

Weights: the native-alignment text has weight `native_align.native_weight` (1.0), split by
`rewritten_fraction` f into rewritten (native_weight * f) and original (native_weight * (1 - f))
text; each replay source has its own weight; the data mixer normalises over the total. Above,
1.0 + 1.0 + 0.5: 40% native-alignment text (20% rewritten, 20% original), 40% SlimPajama, 20%
Wikipedia.

Training hyper-parameters of the student's CPT are not given in the paper; the defaults below
(LR 2e-5 cosine, 1M-token batches of 4096-token rows) are langshift's choice (docs/recipes.md).

Rehearsal of this default, every stage on tiny random models of the same kinds, in minutes
on a CPU (sizes: `REHEARSAL_SIZES` below; docs/recipes.md "Rehearsals"):

  python -m langshift.rehearse --config=experiments/native_align_ar.py \\
      --workdir=/tmp/rehearse/native_align_ar
"""

from langshift import config_lib
from langshift.data.config import default_data_config, source_config
from langshift.evaluation.evaluators import perplexity_eval, suite_eval
from langshift.recipes.native_alignment import native_align_config
from langshift.train.config import base_config

CORPUS = ".cache/corpora/debian_handbook/ar-MA"
SMOLLM2 = ".cache/smollm2-135m-instruct"
ARGS = dict(size=("full", "cpu", "tiny"), slice=("v4-32", "v5e-64"), suite="", replay="")

# The rehearsal of the default (docs/recipes.md "Rehearsals"): the sizes it shrinks, numbers
# only; all else stays as published but the paths and endpoints the rehearsal fills.
REHEARSAL_SIZES = {
    "native_align.seed_documents": 4,
    "native_align.max_documents": 8,
    "native_align.expert.batch_size": 4,
    "native_align.expert.max_concurrency": 4,
    "native_align.worker.batch_size": 8,
    "native_align.worker_sft.train.steps": 2,
    "native_align.worker_sft.train.global_batch_size": 4,
    "native_align.worker_sft.train.seq_len": 1024,
    "native_align.worker_sft.train.log_every": 1,
    "native_align.worker_sft.optimizer.warmup_steps": 1,
    "native_align.evaluate.max_judge_prompts": 2,
    "native_align.evaluate.batch_size": 4,
    "train.steps": 2,
    "train.global_batch_size": 4,
    "train.seq_len": 128,
    "train.loss_chunk_size": 64,
    "train.log_every": 1,
    "optimizer.warmup_steps": 1,
    "checkpoint.every_steps": 2,
    "evals.heldout.every_steps": 2,
    "evals.heldout.max_batches": 1,
    "mesh.num_devices": 1,
}
# A random worker writes noise, which the language filter of its rewrites drops to the last one.
REHEARSAL_STANDINS = {"native_align.filter_corpus_rewrites": False}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, **ARGS)
  c = base_config()
  c.recipe = "native_align"
  c.native_align = native_align_config()
  na = c.native_align
  na.corpus.update(path="", format="jsonl", text_field="text")
  na.update(language="ar", policy="polish", seed_documents=96_000, rewritten_fraction=0.5)
  na.expert.update(
      backend="openai",
      max_new_tokens=2048,
      max_input_tokens=2048,
      batch_size=64,
      max_concurrency=32,
  )
  na.worker.update(
      backend="local", max_input_tokens=1024, max_new_tokens=1536, batch_size=128, dtype="bfloat16"
  )
  # Worker SFT: a few epochs over the ~96k pairs (langshift's choice; the paper gives none).
  na.worker_sft.train.update(steps=3000, global_batch_size=128, seq_len=4096, log_every=20)
  na.worker_sft.optimizer.update(learning_rate=1e-5, warmup_steps=100, schedule="cosine")
  na.worker_sft.model.update(dtype="bfloat16", remat_policy="full")
  # The student (init_from_hf) continues pre-training on the mix.
  c.model.update(dtype="bfloat16", param_dtype="float32", remat_policy="full")
  c.train.update(
      steps=10_000, global_batch_size=256, seq_len=4096, log_every=20, loss_chunk_size=1024
  )  # 128k vocabulary: chunked cross-entropy
  c.optimizer.update(
      learning_rate=2e-5, warmup_steps=200, schedule="cosine", weight_decay=0.1, mu_dtype="bfloat16"
  )
  c.data.packing = "concat"
  # The student is only continually pre-trained, but the evaluate stage has it answer the safety
  # prompts before (a base model: no template of its own) and after CPT: both in Llama-3's
  # instruct format, whose header tokens the base vocabulary holds; cpt/hf ships it.
  c.data.chat_template = "llama3"
  c.checkpoint.update(every_steps=500, keep=2, export_hf_at_end=True, export_dtype="bfloat16")
  heldout = default_data_config()
  heldout.sources.ar = source_config(path=f"{CORPUS}/heldout.jsonl", format="jsonl")
  c.evals.heldout = perplexity_eval(data=heldout, every_steps=1000, max_batches=16)
  # fsdp over the whole slice: an 8B student's weights and Adam moments shard over every chip.
  c.mesh.ici.update(data=1, fsdp=-1, tensor=1)
  # Fitted to the slice by compiling for it (python -m langshift.aot --target=v4-32,
  # docs/benchmarks.md): in one pass of 256 x 4096 tokens the student needed 36.1 GiB of
  # temporaries per v4 chip (30.75 usable) and the worker SFT's 128 x 4096 38.3 GiB; 128 decode
  # rows of Qwen1.5-4B's cache (no grouped KV heads: 2.5k slots x 40 layers x 2 x 2,560) need
  # 31.3 GiB per chip of a 4-chip host. Four microbatches and 32 rows: 24.0, 16.1 and 19.1 GiB.
  c.mesh.target = arg.slice if arg.size == "full" else ""
  if arg.size == "full":
    c.train.microbatches = 4
    na.worker_sft.train.microbatches = 4
    na.worker.batch_size = 32
  if arg.slice == "v5e-64":
    c.train.global_batch_size = 512
    # The worker SFT's 128 rows are 2 per chip here: one pass fits (11.9 GiB of 15.75), and four
    # microbatches of 32 rows could not be split over 64 chips.
    na.worker_sft.train.microbatches = 1
    na.worker.batch_size = 16  # a v5e host's chips hold 16 GiB
  if arg.size == "cpu":
    _cpu(c)
  elif arg.size == "tiny":
    _tiny(c)
  for name in filter(None, arg.replay.split("+")):  # replay sources: paths and weights yours
    c.data.sources[name] = source_config(path="", format="jsonl", weight=1.0)
  if arg.suite:
    c.evals.suite = suite_eval(suite=arg.suite, tasks="*_ar", max_examples=8, at_start=True)
  return c


def _cpu(c):
  """SmolLM2-135M-Instruct in every role on the Arabic handbook; <= 15 minutes on 2 cores.

  Sized by generation, the slow part on a CPU: the expert's prompt carries the whole policy
  (~700 tokens), so its seed sample is small; the worker's prompt is short.
  """
  na = c.native_align
  c.init_from_hf = SMOLLM2
  c.data.chat_template = "tokenizer"  # an instruct student: SmolLM2's own ChatML
  na.corpus.path = f"{CORPUS}/train.jsonl"
  na.update(worker_init=SMOLLM2, max_documents=32, seed_documents=8)
  na.expert.update(
      backend="local",
      hf_dir=SMOLLM2,
      dtype="float32",
      max_input_tokens=128,
      max_new_tokens=160,
      batch_size=16,
      shard_size=16,
  )
  na.worker.update(
      dtype="float32", max_input_tokens=128, max_new_tokens=160, batch_size=32, shard_size=32
  )
  # Chunked cross-entropy: full fp32 logits of 4 x 512 x 49k tokens (and their gradient) pushed
  # the stage past 10 GiB of RSS on a 23 GiB machine shared with other jobs.
  na.worker_sft.train.update(
      steps=8, global_batch_size=4, seq_len=512, log_every=2, loss_chunk_size=256
  )
  na.worker_sft.optimizer.update(learning_rate=5e-5, warmup_steps=2)
  # Remat as published for the worker: its step's temporaries fall from 6.9 to 1.7 GiB
  # (`python -m langshift.bench.memory_report --model=smollm2_135m --batch=4 --seq_len=512
  # --loss_chunk_size=256`), the 12.8 GB run under the 10 GiB line (docs/benchmarks.md).
  na.worker_sft.model.update(dtype="float32", remat_policy="full")
  na.worker_sft.export_dtype = "float32"
  c.model.update(dtype="float32", remat_policy="none")
  c.train.update(steps=10, global_batch_size=4, seq_len=256, log_every=2, loss_chunk_size=256)
  c.optimizer.update(learning_rate=5e-5, warmup_steps=2, mu_dtype="")
  c.checkpoint.update(every_steps=10, keep=1, export_dtype="float32")
  c.evals.heldout.update(every_steps=0, max_batches=4)


def _tiny(c):
  """Seconds per stage; the tests give init_from_hf, worker_init, the corpus and the expert."""
  na = c.native_align
  na.update(max_documents=0, seed_documents=6)
  na.expert.update(
      max_input_tokens=24,  # ~96 characters (a server role counts 4 characters a token)
      max_new_tokens=48,
      batch_size=4,
      max_concurrency=4,
      timeout_s=30.0,
      shard_size=8,
  )
  na.worker.update(
      dtype="float32", max_input_tokens=48, max_new_tokens=24, batch_size=4, shard_size=8
  )
  na.filter.rules = ("empty",)
  na.filter_corpus_rewrites = False  # a random tiny worker writes noise
  na.worker_sft.train.update(steps=2, global_batch_size=4, seq_len=256, log_every=1)
  na.worker_sft.optimizer.update(learning_rate=1e-3, warmup_steps=1)
  na.worker_sft.model.update(dtype="float32", remat_policy="none")
  na.worker_sft.export_dtype = "float32"
  c.model.update(dtype="float32", remat_policy="none")
  c.train.update(steps=3, global_batch_size=4, seq_len=32, log_every=1, loss_chunk_size=0)
  c.optimizer.update(learning_rate=1e-3, warmup_steps=1, mu_dtype="")
  c.checkpoint.update(every_steps=2, keep=1, export_dtype="float32", async_save=False)
  c.evals.heldout.update(every_steps=0, max_batches=1)
  c.mesh.num_devices = 1


def sweep():
  """The paper's comparisons: the mix of rewritten and original text, and the seed data size."""
  mixes = [{"native_align.rewritten_fraction": f} for f in (0.0, 1.0, 0.25, 0.5, 0.75)]
  seeds = [{"native_align.seed_documents": n} for n in (12_000, 24_000, 48_000)]
  return mixes + seeds
