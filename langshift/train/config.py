"""The experiment config schema: every key, its default and what it means.

Experiments (`experiments/*.py`) start from `base_config()` and override fields; command-line
overrides (`--config.optimizer.learning_rate=1e-5`) work on any key. The ConfigDict is locked, so
an unknown key on the command line or in an experiment is an error, not a silent no-op.
"""

from __future__ import annotations

import ml_collections

from langshift.data.config import default_data_config
from langshift.parallel.sharding import DEFAULT_LOGICAL_RULES


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  # --- Recipe: what `python -m langshift.main` runs (langshift/recipes/run.py) ------------------
  #   cpt           the training engine on this config (continual pre-training or SFT: `data`
  #                 decides).
  #   lep, inscp, pinch, noninstruct, native_align
  #                 a recipe (its package in langshift/recipes/, e.g. lep/); its settings live in
  #                 the section of its name that the recipe adds (e.g. `lep_config()`), not in this
  #                 base schema.
  c.recipe = "cpt"
  # A recipe's stage name (its Stage names, e.g. native_align's "rewrite"): run up to and
  # including that stage, then stop (status "stopped"). Rerunning without it continues from the
  # next stage; stage fingerprints do not include it. Empty: every stage.
  c.stop_after = ""

  # --- Initialisation precedence -------------------------------------------------------------
  # 1. A checkpoint already in the workdir resumes everything (params, optimizer, step, RNG, data
  #    iterator): re-running the same command after a preemption continues the run.
  # 2. Else `init_from_hf` (a local Hugging Face directory) loads params only: fresh optimizer,
  #    step 0. Its config.json decides the architecture; `model` then only sets numerics.
  # 3. Else random init of the architecture in `model`.
  c.init_from_hf = ""
  # Resuming compares this config with the one stored in the checkpoint. "strict": a change of
  # architecture, init, data, optimizer (or of train.steps while it sets the schedule's length)
  # is an error listing the keys; "new_config": resume anyway with the new values (e.g. a longer
  # schedule). Changes of evaluations, logging, checkpointing or mesh are always allowed.
  c.resume_policy = "strict"
  # Tokenizer directory (tokenizer.json / .model + tokenizer_config.json); default: init_from_hf.
  c.tokenizer = ""

  # --- Model: langshift.models.config.ModelConfig fields ---------------------------------------
  # Architecture keys are unset (None) by default. Random init: a key left unset takes
  # ModelConfig's default (a 512-wide, 8-layer Llama). With init_from_hf the architecture is
  # config.json's, and setting any architecture key here is an error rather than ignored.
  # The numerics keys (dtype, param_dtype, scan_layers, remat_policy, attention_impl) apply to
  # both.
  placeholder = ml_collections.config_dict.placeholder
  c.model = ml_collections.ConfigDict(
      dict(
          vocab_size=placeholder(int),
          hidden_size=placeholder(int),
          intermediate_size=placeholder(int),
          num_layers=placeholder(int),
          num_heads=placeholder(int),
          num_kv_heads=placeholder(int),
          head_dim=placeholder(int),
          rms_norm_eps=placeholder(float),
          max_position_embeddings=placeholder(int),
          tie_word_embeddings=placeholder(bool),
          rope_theta=placeholder(float),
          model_type=placeholder(str),
          dtype="float32",
          param_dtype="float32",
          scan_layers=True,
          remat_policy="none",
          attention_impl="xla",
      )
  )

  # --- Parallelism ----------------------------------------------------------------------------
  # Mesh axes data / fsdp / tensor. `ici`: within a slice; `dcn`: across slices (multi-slice).
  # -1 takes the remaining devices. The batch is sharded over data x fsdp.
  c.mesh = ml_collections.ConfigDict()
  c.mesh.ici = ml_collections.ConfigDict(dict(data=1, fsdp=-1, tensor=1))
  c.mesh.dcn = ml_collections.ConfigDict(dict(data=1, fsdp=1, tensor=1))
  # 0: every device; N: only the first N (debugging, equivalence tests, tiny CPU runs). A recipe's
  # local models (generation roles, the perplexity scorer) load onto the first N of each
  # process's own devices (langshift/recipes/roles.py).
  c.mesh.num_devices = 0
  # The slice or GPU nodes this setting is sized for, by the names `python -m langshift.aot`
  # takes (v4-32, v5e-16, h100x8; langshift/aot/targets.py): the target that check compiles for
  # when given no --target. Nothing at run time reads it (the mesh fills whatever devices there
  # are); empty for settings sized for a CPU.
  c.mesh.target = ""
  # Logical axis name -> mesh axes (None: replicated). See langshift/parallel/sharding.py.
  c.logical_rules = [list(r) for r in DEFAULT_LOGICAL_RULES]

  # --- Optimizer ------------------------------------------------------------------------------
  c.optimizer = ml_collections.ConfigDict(
      dict(
          learning_rate=1e-4,
          schedule="cosine",  # cosine | wsd | constant
          warmup_steps=100,
          total_steps=ml_collections.config_dict.placeholder(int),  # None: train.steps
          final_lr_fraction=0.1,
          wsd_decay_fraction=0.2,
          b1=0.9,
          b2=0.95,
          eps=1e-5,
          weight_decay=0.1,
          grad_clip_norm=1.0,
          # No weight decay on norms and biases (regexes over parameter paths).
          no_decay_patterns=(r"scale$", r"bias$"),
          mu_dtype="",
      )
  )  # "" keeps the param dtype for Adam's first moment; "bfloat16" halves it.

  # --- Training -------------------------------------------------------------------------------
  c.train = ml_collections.ConfigDict(
      dict(
          steps=1000,
          # > 0: a recipe's training stage sets `steps` from this many passes over its one chat
          # file (the packed rows of its conversations; langshift/recipes/training.py). The
          # engine alone counts steps: it refuses epochs.
          epochs=0.0,
          global_batch_size=8,  # rows per optimizer step (all microbatches, all hosts)
          seq_len=512,
          microbatches=1,  # gradient accumulation: global_batch_size / microbatches rows at a time
          # Trainable parameters: a preset ("all", "embeddings", "lora") or a list of regexes over
          # parameter paths such as "layers/self_attn/.*". Frozen parameters hold no optimizer
          # state.
          trainable="all",
          # Low-rank adapters for trainable="lora" (langshift/models/lora.py): rank r, alpha (the
          # update is scaled by alpha / r), dropout on the adapter input, `targets` (presets
          # "attention", "mlp", "lm_head" or regexes over kernel paths; unscanned layers are
          # "layers_<i>/..."), `train_embeddings` (also train embed_tokens/lm_head in full) and
          # the adapters' own param dtype (the frozen base keeps model.param_dtype).
          lora=ml_collections.ConfigDict(
              dict(
                  rank=8,
                  alpha=16.0,
                  dropout=0.0,
                  targets=("attention", "mlp"),
                  train_embeddings=False,
                  param_dtype="float32",
              )
          ),
          z_loss=0.0,
          # >0: cross-entropy over this many positions at a time (big vocabularies).
          loss_chunk_size=0,
          log_every=10,
      )
  )

  # --- Checkpoints and exports ----------------------------------------------------------------
  c.checkpoint = ml_collections.ConfigDict(
      dict(
          every_steps=500,
          keep=3,
          async_save=True,
          export_hf_at_end=True,
          export_hf_every=0,
          export_dtype="bfloat16",
      )
  )

  # --- Performance accounting -----------------------------------------------------------------
  # Peak FLOP/s per device for MFU; 0 looks the device kind up in langshift/train/flops.py (and
  # measures a matmul on CPU).
  c.perf = ml_collections.ConfigDict(dict(peak_flops_per_device=0.0))

  c.data = default_data_config()

  # --- Evaluations during training (langshift/evaluation/evaluators.py) -------------------------
  # One table: name -> an evaluation of one kind, each run every `every_steps` steps, at the end
  # of training, and before the first step when `at_start`:
  #   c.evals.heldout = evaluators.perplexity_eval(data=..., max_batches=4)
  #       held-out perplexity, written as eval/perplexity
  #   c.evals.darumeru = evaluators.suite_eval(suite="handbook_mini", every_steps=500)
  #       a benchmark suite, written as eval/<task>/<metric> and eval/micro_avg
  c.evals = ml_collections.ConfigDict()
  return c


ARCHITECTURE_KEYS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_layers",
    "num_heads",
    "num_kv_heads",
    "head_dim",
    "rms_norm_eps",
    "max_position_embeddings",
    "tie_word_embeddings",
    "rope_theta",
    "model_type",
)
NUMERICS_KEYS = ("dtype", "param_dtype", "scan_layers", "remat_policy", "attention_impl")
