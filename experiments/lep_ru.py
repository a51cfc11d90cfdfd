"""LEP on Russian: a Russian tokenizer, embedding-only CPT of the base model, and learned
embedding propagation into its instruct model, exported for transformers/vLLM (Tikhomirov &
Chernyshev 2024, "Facilitating large language model Russian adaptation with Learned Embedding
Propagation", arXiv:2412.21140).

Default: the published Llama-3-8B setting (Extended tokenizer, Conversion propagation), sized for
one 8 x H100 node (`config.mesh.target`, the target `python -m langshift.aot` checks). Base and
instruct are local Hugging Face directories you supply (nothing is downloaded), e.g.

  python -m langshift.main --config=experiments/lep_ru.py --workdir=workdir/lep_ru \\
      --config.lep.base=/models/Meta-Llama-3-8B \\
      --config.lep.instruct=/models/Meta-Llama-3-8B-Instruct \\
      --config.data.sources.ru.path='/corpora/ru/*.jsonl' --config.train.steps=<one epoch> \\
      --config.lep.evaluate.data_dir=/data/darumeru_suite

Outputs: workdir/{tokenizer_new, base_init, cpt, lep_instruct, evaluate}; lep_instruct is the chat
model, evaluate/metrics.json its Darumeru scores, zero-shot as the paper evaluates instruct models
(the `darumeru` suite on your local copies of its task files, langshift/evaluation/darumeru.py;
lep.evaluate.suite='' skips it). CPU and tiny sizes evaluate on the offline handbook_mini suite.
Arguments (`--config=experiments/lep_ru.py:model=...,size=...`; a bare value such as `:tiny`
works too):
  model=llama3   Llama-3-8B / -Instruct: 128k SentencePiece pool, LR 2e-4 (default).
  model=mistral  Mistral-7B / OpenChat-3.5: 32k SentencePiece pool, LR 1e-4.
  model=smollm2  SmolLM2-135M-Instruct as both base and instruct, the offline Debian handbook as
                 text (`launch/setup_env.sh`), CPU-sized. It demonstrates the mechanics, not the
                 published numbers: with base = instruct the propagation map is the identity.
  size=tiny      a seconds-long CPU run of every stage (the end-to-end test); give lep.base and
                 lep.instruct. size=cpu is SmolLM2's CPU sizing; size=full the paper's.
  calibrate      the optional calibration (paper, Sec. 2.4.2): the original instruct model answers
                 a prompt set, and the propagated model is tuned on those answers with LoRA (r 8,
                 alpha 1, lr 2.5e-5) on its first and last layers plus the embeddings, batch 64 x
                 8096 tokens, one epoch (langshift/recipes/lep/calibration.py). Give the prompts
                 (--config.lep.calibration.prompts=ru_prompts.jsonl), optionally Wikipedia copy
                 examples (.copy_corpus=ruwiki.jsonl, .copy_examples=N) and a judge's grade
                 filter (.grade.enabled=true, .grade.judge.base_url=...); model=smollm2 uses the
                 offline parallel set's Russian instructions (`launch/setup_env.sh`).
  answers=propagated  with calibrate: the propagated model answers the prompts itself (the
                 variant langshift ran before; answers=instruct is the paper's).
`sweep()` lists the paper's tokenizer x propagation ablation as overrides; the cells of one
tokenizer share one tokenizer/init/CPT (SWEEP_SETTINGS: lep.shared_stages).

Rehearsal of this default, every stage on tiny random models of the same kinds, in minutes
on a CPU (sizes: `REHEARSAL_SIZES` below; docs/recipes.md "Rehearsals"):

  python -m langshift.rehearse --config=experiments/lep_ru.py --workdir=/tmp/rehearse/lep_ru
"""

from langshift import config_lib
from langshift.data.config import default_data_config, source_config
from langshift.evaluation.evaluators import perplexity_eval
from langshift.recipes.lep import lep_config
from langshift.train.config import base_config

CORPUS = ".cache/corpora/debian_handbook/ru-RU"
PARALLEL_SET = ".cache/corpora/handbook_parallel"  # Russian instructions of the offline set
SMOLLM2 = ".cache/smollm2-135m-instruct"
# size=auto: "cpu" for smollm2, "full" otherwise.
ARGS = dict(
    model=("llama3", "mistral", "smollm2"),
    size=("auto", "full", "cpu", "tiny"),
    calibrate=False,
    answers=("instruct", "propagated"),
)
# Flags every cell of `python -m langshift.sweep` gets (langshift/sweep.py): the propagation
# cells of one tokenizer variant run its tokenizer, init and CPT once, in <root>/lep_shared/.
SWEEP_SETTINGS = {"lep.shared_stages": "../lep_shared"}

# The rehearsal of the default (docs/recipes.md "Rehearsals"): the sizes it shrinks, numbers
# only; all else stays as published but the paths and endpoints the rehearsal fills.
REHEARSAL_SIZES = {
    "lep.new_vocab_size": 600,
    "lep.tokenizer_max_texts": 2000,
    "train.steps": 2,
    "train.global_batch_size": 4,
    "train.seq_len": 64,
    "train.loss_chunk_size": 32,
    "train.log_every": 1,
    "optimizer.warmup_steps": 1,
    "checkpoint.every_steps": 2,
    "evals.heldout.every_steps": 2,
    "evals.heldout.max_batches": 1,
    "mesh.num_devices": 1,
}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, **ARGS)
  size = arg.size if arg.size != "auto" else ("cpu" if arg.model == "smollm2" else "full")
  c = base_config()
  c.recipe = "lep"
  c.lep = lep_config()
  c.lep.update(
      tokenizer_variant="extended", new_vocab_size=128_000, propagation="conversion", init="mean"
  )
  # What the recipe needs from the engine (it checks these, see lep/config.py's
  # REQUIRED_SETTINGS): only
  # embed/lm_head train, and the donor is exported in float32 for the least-squares fit.
  c.train.trainable = "embeddings"
  c.checkpoint.update(export_hf_at_end=True, export_dtype="float32")
  # LEP's continual pre-training: AdamW (0.9, 0.95), eps 1e-5, wd 0.1, cosine after 100 warm-up
  # steps, LR 2e-4 (Llama-3), batch 256 x 1024, bf16 compute, one epoch of the corpus.
  c.optimizer.update(
      learning_rate=2e-4,
      schedule="cosine",
      warmup_steps=100,
      b1=0.9,
      b2=0.95,
      eps=1e-5,
      weight_decay=0.1,
  )
  c.train.update(
      global_batch_size=256, seq_len=1024, steps=10_000, log_every=10, loss_chunk_size=1024
  )  # 128k+ vocab: chunked cross-entropy
  c.model.update(dtype="bfloat16", param_dtype="float32", remat_policy="full")
  c.checkpoint.update(every_steps=500, keep=2)
  # Rows start at a document or paragraph boundary: bos + text + eos packed into 1024 tokens.
  c.data.sources.ru = source_config(path=f"{CORPUS}/train.jsonl", format="jsonl")
  c.data.packing = "boundary"
  heldout = default_data_config()
  heldout.sources.ru = source_config(path=f"{CORPUS}/heldout.jsonl", format="jsonl")
  heldout.packing = "boundary"
  c.evals.heldout = perplexity_eval(data=heldout, every_steps=500, max_batches=8)

  # Calibration (paper, Sec. 2.4.2 and 3.4): LoRA r 8, alpha 1, lr 2.5e-5 on the first and last
  # layers and the embeddings; one epoch of batch 64 x 8096 over the original instruct model's
  # answers (calibration.calibration_config's defaults). Its training run is its own
  # (lep.calibration.run); what the paper leaves open is CPT's: AdamW's moments and decay, the
  # model numerics, the loss chunking.
  c.lep.calibration.update(enabled=arg.calibrate, answers=arg.answers)
  c.lep.calibration.run.optimizer.update(b1=0.9, b2=0.95, eps=1e-5, weight_decay=0.1)
  c.lep.calibration.run.model.update(dtype="bfloat16", param_dtype="float32", remat_policy="full")
  c.lep.calibration.run.train.update(log_every=10, loss_chunk_size=1024)
  # Evaluation (paper, Tables 2-4): Darumeru on the user's files, instruct model zero-shot.
  c.lep.evaluate.update(suite="darumeru", num_fewshot=0, chat=True, dtype="bfloat16")

  if arg.model == "mistral":
    c.lep.new_vocab_size = 32_000
    c.optimizer.learning_rate = 1e-4
  elif arg.model == "smollm2":
    c.lep.update(base=SMOLLM2, instruct=SMOLLM2, new_vocab_size=8_000)
    c.lep.calibration.update(
        prompts=f"{PARALLEL_SET}/train/ru.jsonl",
        heldout_prompts=f"{PARALLEL_SET}/heldout/ru.jsonl",
        # The handbook stands in for Wikipedia in the copy examples.
        copy_corpus=f"{CORPUS}/train.jsonl",
        copy_examples=16,
    )
  # Sized for one 8 x H100 node (docs/benchmarks.md, `python -m langshift.aot`): the embedding
  # step of 256 x 1,024 tokens takes 38.8 of 59.3 usable GiB per card; a v5e-16 needs
  # `--config.train.microbatches=2` (15.1 of 15.75 GiB).
  c.mesh.target = "h100x8" if size == "full" else ""
  if size == "cpu":
    c.model.update(dtype="float32", remat_policy="none")
    # 4 gradient-accumulation microbatches: the calibration's unscanned 8 x 512-token LoRA step
    # peaked at 13.9 GiB RSS in one (OOM-killed on a shared VM), 5.95 GiB in four, with the same
    # losses and perplexities; CPT: 3.76 GiB, the same losses, perplexity 1,104.894 for 1,104.891
    # (docs/benchmarks.md, "Host memory of the CPU variants").
    c.train.update(
        global_batch_size=4, seq_len=256, steps=20, log_every=5, loss_chunk_size=0, microbatches=4
    )
    c.evals.heldout.update(every_steps=0, max_batches=2)
    c.optimizer.update(learning_rate=1e-3, warmup_steps=2)
    c.checkpoint.update(every_steps=10, keep=1)
    c.lep.calibration.update(max_prompts=64, max_heldout_prompts=16, heldout_max_new_tokens=64)
    # Its own section (the run does not inherit `train`): the same 4 microbatches. Without them
    # the whole run peaked at 13.99 GiB in this stage (langshift.bench.host_memory).
    c.lep.calibration.run.train.update(
        global_batch_size=8, seq_len=512, log_every=5, loss_chunk_size=0, microbatches=4
    )
    c.lep.calibration.run.optimizer.warmup_steps = 1
    c.lep.calibration.run.model.update(dtype="float32", remat_policy="none")
    c.lep.calibration.answerer.update(max_new_tokens=128, batch_size=16, dtype="float32")
    c.lep.evaluate.update(
        suite="handbook_mini",
        data_dir="",
        tasks="*_ru,ppl_handbook",
        max_examples=8,
        dtype="float32",
    )
  elif size == "tiny":
    c.lep.update(new_vocab_size=600, tokenizer_max_texts=2_000)
    c.model.update(dtype="float32", remat_policy="none")
    c.train.update(global_batch_size=8, seq_len=32, steps=4, log_every=1, loss_chunk_size=0)
    c.evals.heldout.update(every_steps=0, max_batches=1)
    c.optimizer.update(learning_rate=1e-2, warmup_steps=1)
    c.checkpoint.update(every_steps=2, keep=1)
    c.lep.calibration.update(max_heldout_prompts=2, heldout_max_new_tokens=4)
    c.lep.calibration.run.train.update(
        global_batch_size=8,
        seq_len=64,
        epochs=3.0,  # a few steps, so that a killed calibration has a checkpoint to resume
        log_every=1,
        loss_chunk_size=0,
    )
    c.lep.calibration.run.optimizer.update(
        warmup_steps=1, learning_rate=1e-2  # large enough that the tests see the adapters move
    )
    c.lep.calibration.run.model.update(dtype="float32", remat_policy="none")
    c.lep.calibration.answerer.update(max_new_tokens=8, batch_size=4, dtype="float32")
    c.lep.evaluate.update(
        suite="handbook_mini",
        data_dir="",
        tasks="translation_ru,copy_sentence_ru",
        max_examples=2,
        batch_size=2,
        dtype="float32",
    )
  return c


def sweep():
  """LEP's ablation grid: tokenizer variant x propagation method (Llama-3 sizes)."""
  variants = [
      {"lep.tokenizer_variant": "bpe"},
      {"lep.tokenizer_variant": "unigram"},
      {"lep.tokenizer_variant": "extended"},
      {"lep.tokenizer_variant": "optimized", "lep.shrink_to": 64_000, "lep.max_new_tokens": 64_000},
  ]
  grid = [{**v, "lep.propagation": p} for v in variants for p in ("swap", "overlap", "conversion")]
  # The paper's last row: the Extended/Conversion model calibrated.
  calibrated = {"lep.tokenizer_variant": "extended", "lep.propagation": "conversion"}
  return grid + [{**calibrated, "lep.calibration.enabled": True}]
