"""A pinch of multilinguality: instruction tuning on an English set in which a share P of the
examples, spread evenly over all twelve languages (English included), is replaced by their
translations at a fixed budget (Shaham et al. 2024, "Multilingual Instruction Tuning With Just a
Pinch of Multilinguality", arXiv:2401.01854, Sec. 3.2).

Default: the published setting: 4,640 examples (LIMA's 1,000 and 3,640 first turns of
OpenAssistant) in 12 parallel languages (Sec. 2.1), P = 1: the 11 non-English languages get
floor(4,640 x 1% x 11/12) = floor(42.53) = 42 examples (the paper's "40"), English the other
4,598. At P = 100 English keeps its twelfth (387). The paper tunes PaLM 2, which is not
public; the student here is a Llama-3-8B (or Mistral-7B, `model=mistral`) base model you supply.
Fine-tuning hyper-parameters are langshift's choice (LR 1e-5, 3 epochs of 2048-token rows; see
docs/recipes.md), and so is the chat template (`data.chat_template`: Llama-3's for a Llama-3
base, Mistral's [INST] for Mistral; PaLM 2's is not public). It is sized for a TPU v5e-16 slice
(`config.mesh.target`, the slice `python -m langshift.aot` checks). Paths are yours (nothing is
downloaded); the set is in the layout of `langshift/data/parallel_sets.py` (its loaders read
LIMA, OpenAssistant and translations by id):

  python -m langshift.main --config=experiments/pinch.py --workdir=workdir/pinch \\
      --config.init_from_hf=/models/Meta-Llama-3-8B --config.pinch.parallel_set=/data/pinch12

Arguments (`--config=experiments/pinch.py:<arg>`):
  model=mistral  Mistral-7B as the student.
  size=cpu       SmolLM2-135M-Instruct on the offline six-language handbook set
                 (`.cache/corpora/handbook_parallel`, prepared by launch/setup_env.sh): a budget
                 of 60 examples over 6 languages (P = 10: floor(60 x 10% x 5/6) = 5 non-English
                 examples; P = 1: none), one epoch, a few minutes a run on 2 cores.
  size=tiny      seconds; the tests give init_from_hf and the parallel set.
  study=percent  (default) P% of the budget spread over all the languages, English included
                 (Sec. 3.2); `--config.pinch.share_over=non_english` spreads it over the
                 non-English languages only (round(P% of budget): 46 at P = 1, no English at
                 P = 100), langshift's reading before it followed the paper's.
  study=languages  the budget split evenly over the first `num_languages` of the study's
                 languages (Sec. 3.4: en, ar, fi, it, ru, sw; on the handbook set en, ar, it,
                 ru, es, zh, whose held-out languages are es and zh up to 4 languages).
  count=N        fix the number of non-English examples directly (pinch.multilingual_examples;
                 -1, the default, derives it from P: 42 at P = 1); count=40 gives the paper's
                 round figure exactly.
  assignment=parallel  the non-English languages share translations of the same instructions
                 (default disjoint: every instruction once).

`sweep()`: P in {0, 1, 10, 20, ..., 100}, then the language-count study (1..6 languages);
`python -m langshift.recipes.pinch.report --root=<sweep root>` then writes one table per score
(cell x language) and a plot per score like the paper's figures. For the IF score, first tune one
reference per evaluated language L (`--config.pinch.split=monolingual --config.pinch.monolingual=L`,
workdir `<refs>/mono-L`), then give the sweep `--config.pinch.evaluate.monolingual_workdir=
<refs>/mono-{lang}` and a judge (`pinch.evaluate.judge`: a local checkpoint or an
OpenAI-compatible server); each cell's evaluate stage writes `if_score/<lang>`.

Rehearsal of this default, every stage on tiny random models of the same kinds, in minutes
on a CPU (sizes: `REHEARSAL_SIZES` below; docs/recipes.md "Rehearsals"):

  python -m langshift.rehearse --config=experiments/pinch.py --workdir=/tmp/rehearse/pinch
"""

from langshift import config_lib
from langshift.evaluation.evaluators import response_eval
from langshift.recipes.pinch import pinch_config
from langshift.train.config import base_config

HANDBOOK_SET = ".cache/corpora/handbook_parallel"
SMOLLM2 = ".cache/smollm2-135m-instruct"
ARGS = dict(
    model=("llama3", "mistral"),
    size=("full", "cpu", "tiny"),
    study=("percent", "languages"),
    count=-1,
    assignment=("disjoint", "parallel"),
)

# The rehearsal of the default (docs/recipes.md "Rehearsals"): the sizes it shrinks, numbers
# only; all else stays as published but the paths and endpoints the rehearsal fills.
REHEARSAL_SIZES = {
    "pinch.budget": 100,  # P = 1: one multilingual example
    "train.epochs": 1.0,
    "pinch.max_eval_examples": 1,
    "pinch.evaluate.batch_size": 4,
    "evals.responses.max_examples": 1,
    "evals.responses.batch_size": 4,
    "train.global_batch_size": 8,
    "train.seq_len": 256,
    "train.loss_chunk_size": 128,
    "train.log_every": 1,
    "optimizer.warmup_steps": 1,
    "checkpoint.every_steps": 2,
    "mesh.num_devices": 1,
}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, **ARGS)
  c = base_config()
  c.recipe = "pinch"
  c.pinch = pinch_config()
  p = c.pinch
  p.update(
      budget=4640,
      percent=1.0,
      multilingual_examples=arg.count,
      split="pinch" if arg.study == "percent" else "uniform",
      num_languages=4,
      assignment=arg.assignment,
  )
  p.evaluate.update(responses=True, max_new_tokens=512)
  # The judge-free scores per language, on the held-out prompts the mixture stage writes
  # (`prompts` left empty: the recipe fills it in): eval/language_match/<lang>,
  # eval/reference_nll/<lang>.
  c.evals.responses = response_eval(max_examples=100, max_new_tokens=256, batch_size=32)
  c.data.update(packing="greedy", overlong="truncate")
  # The paper tunes PaLM 2, whose format is not public; a base student has no template of its
  # own, so the run's template is its family's instruct format: Llama-3's headers (tokens its
  # base vocabulary already holds) or Mistral's [INST]. The export and every evaluation use it.
  c.data.chat_template = "mistral" if arg.model == "mistral" else "llama3"
  c.model.update(dtype="bfloat16", param_dtype="float32", remat_policy="full")
  # Three epochs over the mixture: train.steps from its packed rows (langshift/recipes/training.py).
  c.train.update(epochs=3.0, global_batch_size=32, seq_len=2048, log_every=10, loss_chunk_size=1024)
  c.optimizer.update(learning_rate=1e-5, warmup_steps=20, schedule="cosine", weight_decay=0.1)
  c.checkpoint.update(every_steps=200, keep=2, export_hf_at_end=True, export_dtype="bfloat16")
  c.mesh.ici.update(data=1, fsdp=-1, tensor=1)
  if arg.model == "mistral":
    c.optimizer.learning_rate = 5e-6
    c.data.chat_template = "mistral"
  # Sized for a TPU v5e-16 (docs/benchmarks.md, `python -m langshift.aot`): 12.4 of 15.75 GiB
  # per chip for the step, under half a host chip for the answers' generation.
  c.mesh.target = "v5e-16" if arg.size == "full" else ""
  if arg.size == "cpu":
    _cpu(c)
  elif arg.size == "tiny":
    _tiny(c)
  return c


def _cpu(c):
  """SmolLM2-135M-Instruct on the handbook set; one epoch of 60 examples (13k tokens all in
  English, 30k all in other languages: their examples are 2-4x longer in SmolLM2's tokens)."""
  p = c.pinch
  c.init_from_hf = SMOLLM2
  c.data.chat_template = "tokenizer"  # an instruct student: SmolLM2's own ChatML
  p.update(
      parallel_set=HANDBOOK_SET,
      budget=60,
      languages=("ar", "es", "it", "ru", "zh"),
      study_languages=("en", "ar", "it", "ru", "es", "zh"),
      max_eval_examples=8,
  )
  p.evaluate.update(responses=False, max_new_tokens=48, batch_size=4)
  c.evals.responses.update(max_examples=8, max_new_tokens=48, batch_size=4)
  # Peak memory ~10 GB without remat on a shared 24 GB machine: recompute layers instead, and
  # checkpoint often enough that a killed run loses little.
  c.model.update(dtype="float32", remat_policy="full")
  c.train.update(epochs=1.0, global_batch_size=4, seq_len=512, log_every=2, loss_chunk_size=0)
  c.optimizer.update(learning_rate=5e-5, warmup_steps=2, mu_dtype="")
  c.checkpoint.update(every_steps=3, keep=1, export_dtype="float32")


def _tiny(c):
  """Seconds; the tests give init_from_hf and pinch.parallel_set (the published template: the
  tests' tiny tokenizers hold Llama-3's header tokens)."""
  p = c.pinch
  p.update(budget=12, percent=50.0, languages=("ar", "ru"), study_languages=("en", "ar", "ru"))
  p.update(max_eval_examples=2, num_languages=2)
  p.evaluate.update(responses=True, max_new_tokens=4, batch_size=4)
  c.evals.responses.update(max_examples=2, max_new_tokens=4, batch_size=4)
  c.model.update(dtype="float32", remat_policy="none")
  c.train.update(
      steps=2, epochs=0.0, global_batch_size=2, seq_len=64, log_every=1, loss_chunk_size=0
  )
  c.optimizer.update(learning_rate=1e-3, warmup_steps=1, mu_dtype="")
  c.checkpoint.update(every_steps=2, keep=1, export_dtype="float32", async_save=False)
  c.mesh.num_devices = 1


def sweep():
  """The paper's two studies: the share P (Sec. 3.2) and the number of languages (Sec. 3.4)."""
  percents = [{"pinch.percent": float(p)} for p in (0, 1, *range(10, 101, 10))]
  counts = [
      {"pinch.split": "uniform", "pinch.num_languages": k} for k in range(1, 7)
  ]  # on the six study languages; the cpu variant has six too
  return percents + counts
