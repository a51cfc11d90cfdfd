"""A tiny randomly initialised Llama on the Russian Debian handbook: an experiment small enough to
sweep on a CPU (the sweep notebook, `tests/test_sweep.py`).

Random init of a 2-layer, 64-wide model with SmolLM2's tokenizer, a few steps of continual
pre-training, held-out perplexity at the end. Inputs are what `launch/setup_env.sh` (or the
notebooks' install cell) prepares; nothing is downloaded.

  python -m langshift.sweep --config=colabs/tiny_lm.py --root=workdir/tiny_lm_sweep

`sweep()` varies the learning rate: the table and plot show held-out perplexity against it.
Arguments (`--config=colabs/tiny_lm.py:steps=8`):
  steps=N   training steps per run (default 6).
"""

from langshift import config_lib
from langshift.data.config import default_data_config, source_config
from langshift.evaluation.evaluators import perplexity_eval
from langshift.train.config import base_config

TOKENIZER = ".cache/smollm2-135m-instruct"
CORPUS = ".cache/corpora/debian_handbook/ru-RU"
ARGS = dict(steps=6)


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, **ARGS)
  c = base_config()
  c.tokenizer = TOKENIZER
  c.model.update(
      vocab_size=49_152,  # SmolLM2's tokenizer
      hidden_size=64,
      intermediate_size=128,
      num_layers=2,
      num_heads=4,
      num_kv_heads=2,
      max_position_embeddings=256,
  )
  c.train.update(steps=arg.steps, global_batch_size=4, seq_len=64, log_every=1)
  c.optimizer.update(learning_rate=1e-2, warmup_steps=1, schedule="cosine")
  c.checkpoint.update(every_steps=2, keep=1, async_save=False, export_hf_at_end=False)
  c.mesh.num_devices = 1
  c.data.sources.ru = source_config(path=f"{CORPUS}/train.jsonl", format="jsonl")
  c.data.packing = "concat"
  heldout = default_data_config()
  heldout.sources.ru = source_config(path=f"{CORPUS}/heldout.jsonl", format="jsonl")
  heldout.packing = "concat"
  c.evals.heldout = perplexity_eval(data=heldout, max_batches=2)
  return c


def sweep():
  """Learning rate, the first thing to sweep for a new model and corpus."""
  return [{"optimizer.learning_rate": lr} for lr in (3e-3, 1e-2, 3e-2)]
