"""Ahead-of-time compilation of a run's programs for TPU slices and GPU nodes, on a CPU.

`python -m langshift.aot --config=experiments/<x>.py --target=v5e-16` compiles every program the
experiment executes there (train steps, generation prefill/decode, the scoring forward) for
compile-only devices of the target (`jax.experimental.topologies`), and reports per-chip memory
against the chip's HBM, collectives, FLOPs and compile time. Nothing is allocated and no weights
are read: shapes come from the config, a checkpoint's config.json, or a preset (`--model`).
"""
