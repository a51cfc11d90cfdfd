"""langshift.aot on compile-only TPU devices: per-chip argument bytes of a tiny train step equal
the bytes computed by hand from the model's dimensions and the logical rules (all parameters,
embeddings only, LoRA), and the collectives of the fsdp step are pinned."""

import pytest

pytest.importorskip("libtpu", reason="the TPU compiler (the `aot` extra) is not installed")

import jax  # noqa: E402

from langshift.aot import compile as compile_lib  # noqa: E402
from langshift.aot import targets  # noqa: E402
from langshift.train.config import base_config  # noqa: E402

V, D, F, L, H, KV, HD = 1024, 512, 1024, 2, 4, 2, 128  # head_dim = D / H
B, T = 8, 256
CHIPS = 4  # v5e-4 and v4-8: four chips, the whole mesh on fsdp


def tiny_config(trainable):
  c = base_config()
  c.model.update(
      vocab_size=V,
      hidden_size=D,
      intermediate_size=F,
      num_layers=L,
      num_heads=H,
      num_kv_heads=KV,
      dtype="bfloat16",
      remat_policy="full",
  )
  c.train.update(global_batch_size=B, seq_len=T, trainable=trainable)
  return c


def by_hand(trainable):
  """Per-chip argument bytes of the step (state + batch), from the dimensions alone.

  The rules shard every matrix's `embed` axis over fsdp (4 chips); heads, kv_heads, mlp and
  vocab go to the tensor axis (size 1), norms are replicated. fp32 everywhere in the state.
  """
  embeddings = 2 * V * D  # embed_tokens and the untied lm_head
  per_layer = D * H * HD * 2 + D * KV * HD * 2 + 3 * D * F  # q, o; k, v; gate, up, down
  matrices = embeddings + L * per_layer
  norms = L * 2 * D + D
  params = 4 * (matrices // CHIPS + norms)
  if trainable == "all":
    moments = 2 * params  # Adam's mu and nu: the same shapes and shardings as the params
  elif trainable == "embeddings":
    moments = 2 * 4 * embeddings // CHIPS  # frozen parameters hold no optimizer state
  else:  # LoRA rank 8 on attention and MLP: A [in, r], B [r, out]; only an `embed` side shards
    r = 8
    a_sharded = (D * r // CHIPS) * 5  # q, k, v, gate, up read the embed axis
    b_full = r * (H * HD + 2 * KV * HD + 2 * F)
    a_full = r * (H * HD + F)  # o and down read heads and mlp (tensor axis: not sharded here)
    b_sharded = 2 * (r * D // CHIPS)  # o and down write the embed axis
    adapters = 4 * L * (a_sharded + b_full + a_full + b_sharded)
    params += adapters
    moments = 2 * adapters
  batch = 5 * 4 * B * T // CHIPS  # inputs, targets, segment_ids, positions, loss_weights
  # The scalars (step, Adam's count, the schedule's count) and the [2] rng key: one 128-element
  # 32-bit TPU tile (T(128)) each.
  small = 4 * 512
  return params + moments + batch + small


@pytest.fixture(scope="module")
def reports():
  # tests/conftest.py asks for "highest" matmul precision (fp32 parity tests); Mosaic refuses
  # bf16 splash kernels at that precision ("Bad lhs type"), and runs use the default.
  with jax.default_matmul_precision("default"):
    return _compile_all()


def _compile_all():
  out = {}
  for trainable in ("all", "embeddings", "lora"):
    out[("v5e-4", trainable)] = compile_lib.compile_config(
        tiny_config(trainable), targets.get_target("v5e-4")
    )[0]
  out[("v4-8", "all")] = compile_lib.compile_config(tiny_config("all"), targets.get_target("v4-8"))[
      0
  ]
  return out


@pytest.mark.parametrize(
    "target,trainable",
    [("v5e-4", "all"), ("v5e-4", "embeddings"), ("v5e-4", "lora"), ("v4-8", "all")],
)
def test_argument_bytes_by_hand(reports, target, trainable):
  r = reports[(target, trainable)]
  assert r.argument_bytes == by_hand(trainable)
  assert r.attention == "splash"
  assert r.fits and r.peak_bytes < targets.get_target(target).hbm_bytes
  assert r.settings["chips"] == CHIPS


def test_frozen_parameters_and_lora_carry_less_state(reports):
  full = reports[("v5e-4", "all")].argument_bytes
  assert reports[("v5e-4", "embeddings")].argument_bytes < full / 2
  assert reports[("v5e-4", "lora")].argument_bytes < reports[("v5e-4", "embeddings")].argument_bytes


def test_fsdp_step_collectives_pinned(reports):
  """A sharding regression (a gathered matrix left replicated, a new reshard) changes these."""
  assert reports[("v5e-4", "all")].collectives == {
      "all-reduce": 6,
      "all-gather": 54,
      "all-to-all": 2,
  }
  assert reports[("v4-8", "all")].collectives == {
      "all-reduce": 10,
      "all-gather": 20,
      "all-to-all": 2,
  }


def test_collective_counting():
  hlo = """
  %ag = bf16[8,512]{1,0} all-gather-start(bf16[2,512]{1,0} %p), dimensions={0}
  %agd = bf16[8,512]{1,0} all-gather-done(%ag)
  %ar = f32[] all-reduce(f32[] %x), to_apply=%add
  %ag2 = ((bf16[2,64]{1,0}, bf16[2,32]{1,0}), (bf16[8,64]{1,0}, bf16[8,32]{1,0})) all-gather-start(
  %ag2d = (bf16[8,64]{1,0}, bf16[8,32]{1,0}) all-gather-done(%ag2)
  %rs = f32[2,512]{1,0} reduce-scatter(f32[8,512]{1,0} %y), dimensions={0}
  """
  assert compile_lib.count_collectives(hlo) == {
      "all-reduce": 1,
      "all-gather": 2,
      "reduce-scatter": 1,
  }
