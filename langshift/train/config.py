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
  #   cpt  train_and_evaluate on this config (continual pre-training or SFT: `data` decides).
  #   lep  learned embedding propagation (methods §3, langshift/recipes/lep.py): target tokenizer
  #        -> initialised base -> embedding-only CPT of the base -> propagation into the instruct
  #        model -> HF export. The CPT stage is this config with init/tokenizer/trainable set.
  c.recipe = "cpt"
  c.lep = ml_collections.ConfigDict(dict(
      base="",  # local HF directory of the base model (it is continually pre-trained)
      instruct="",  # local HF directory of its instruct model (it receives the embeddings)
      tokenizer_variant="extended",  # bpe | unigram | extended | optimized
      # SentencePiece model trained on `data`'s source files: the whole new vocabulary for
      # bpe/unigram, the pool of candidate pieces for extended/optimized (LEP: 32k Mistral,
      # 128k Llama-3). A soft limit: a corpus too small to reach it gives fewer pieces.
      new_vocab_size=32000,
      max_new_tokens=ml_collections.config_dict.placeholder(int),  # None: every new piece
      shrink_to=ml_collections.config_dict.placeholder(int),  # optimized: old vocab cut to this
      tokenizer_max_texts=1_000_000,  # lines of the data sources the tokenizer is trained on
      init="mean",  # new rows: mean of old sub-token rows (LEP) | random (matched mean/std)
      propagation="conversion",  # swap | overlap | conversion
      # Dtype of the chunked least-squares products; they are summed and solved in float64
      # either way. float32 is ~4x faster on CPU; it moves the fitted map by ~1e-6 relative,
      # and ~3 in 10,000 bf16 entries of the result round the other way (docs/benchmarks.md).
      propagation_products="float32"))  # float32 | float64

  # --- Initialisation precedence -------------------------------------------------------------
  # 1. A checkpoint already in the workdir resumes everything (params, optimizer, step, RNG, data
  #    iterator): re-running the same command after a preemption continues the run.
  # 2. Else `init_from_hf` (a local Hugging Face directory) loads params only: fresh optimizer,
  #    step 0. Its config.json decides the architecture; `model` then only sets numerics.
  # 3. Else random init of the architecture in `model`.
  c.init_from_hf = ""
  # Tokenizer directory (tokenizer.json / .model + tokenizer_config.json); default: init_from_hf.
  c.tokenizer = ""

  # --- Model: langshift.models.config.ModelConfig fields ---------------------------------------
  # With init_from_hf only the numerics keys below are used (dtype, param_dtype, scan_layers,
  # remat_policy, attention_impl); architecture keys come from config.json.
  c.model = ml_collections.ConfigDict(dict(
      vocab_size=32000, hidden_size=512, intermediate_size=1408, num_layers=8, num_heads=8,
      num_kv_heads=4, head_dim=ml_collections.config_dict.placeholder(int), rms_norm_eps=1e-5,
      max_position_embeddings=4096, tie_word_embeddings=False, rope_theta=10000.0,
      model_type="llama", dtype="float32", param_dtype="float32", scan_layers=True,
      remat_policy="none", attention_impl="xla"))

  # --- Parallelism ----------------------------------------------------------------------------
  # Mesh axes data / fsdp / tensor. `ici`: within a slice; `dcn`: across slices (multi-slice).
  # -1 takes the remaining devices. The batch is sharded over data x fsdp.
  c.mesh = ml_collections.ConfigDict()
  c.mesh.ici = ml_collections.ConfigDict(dict(data=1, fsdp=-1, tensor=1))
  c.mesh.dcn = ml_collections.ConfigDict(dict(data=1, fsdp=1, tensor=1))
  c.mesh.num_devices = 0  # 0: every device; N: only the first N (debugging, equivalence tests)
  # Logical axis name -> mesh axes (None: replicated). See langshift/parallel/sharding.py.
  c.logical_rules = [list(r) for r in DEFAULT_LOGICAL_RULES]

  # --- Optimizer ------------------------------------------------------------------------------
  c.optimizer = ml_collections.ConfigDict(dict(
      learning_rate=1e-4, schedule="cosine",  # cosine | wsd | constant
      warmup_steps=100, total_steps=ml_collections.config_dict.placeholder(int),  # None: train.steps
      final_lr_fraction=0.1, wsd_decay_fraction=0.2,
      b1=0.9, b2=0.95, eps=1e-5, weight_decay=0.1, grad_clip_norm=1.0,
      # No weight decay on norms and biases (regexes over parameter paths).
      no_decay_patterns=(r"scale$", r"bias$"),
      mu_dtype=""))  # "" keeps the param dtype for Adam's first moment; "bfloat16" halves it.

  # --- Training -------------------------------------------------------------------------------
  c.train = ml_collections.ConfigDict(dict(
      steps=1000,
      global_batch_size=8,  # rows per optimizer step (all microbatches, all hosts)
      seq_len=512,
      microbatches=1,  # gradient accumulation: global_batch_size / microbatches rows at a time
      # Trainable parameters: a preset ("all", "embeddings") or a list of regexes over parameter
      # paths such as "layers/self_attn/.*". Frozen parameters hold no optimizer state.
      trainable="all",
      z_loss=0.0,
      loss_chunk_size=0,  # >0: cross-entropy over this many positions at a time (big vocabularies)
      log_every=10,
      eval_every=0,  # held-out perplexity every N steps (0: only before and after training)
      eval_batches=4))

  # --- Checkpoints and exports ----------------------------------------------------------------
  c.checkpoint = ml_collections.ConfigDict(dict(
      every_steps=500, keep=3, async_save=True,
      export_hf_at_end=True, export_hf_every=0, export_dtype="bfloat16"))

  # --- Performance accounting -----------------------------------------------------------------
  # Peak FLOP/s per device for MFU; 0 looks the device kind up in langshift/train/flops.py (and
  # measures a matmul on CPU).
  c.perf = ml_collections.ConfigDict(dict(peak_flops_per_device=0.0))

  # --- Training-time benchmark (langshift/evaluation) -------------------------------------------
  # A suite name ("mini_darumeru") or suite JSON path; run every `every_steps` (0: at the end
  # only) and written to metrics.jsonl / TensorBoard as eval/<task>/<metric> and eval/micro_avg.
  c.eval_suite = ml_collections.ConfigDict(dict(
      suite="", every_steps=0, max_examples=8, chat=False, batch_size=8))

  c.data = default_data_config()
  # Held-out text for perplexity before/after training and every `train.eval_every` steps; same
  # schema as `data` (no sources: no evaluation).
  c.eval_data = default_data_config()
  return c


def finalize(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Locks the config so unknown keys fail (ml_collections raises naming the key)."""
  config.lock()
  return config
