"""LoRA in the engine: only adapters train and hold optimizer state, the base keeps its dtype,
adapters shard like their kernels, a killed run resumes to the uninterrupted result, and a run
from a Hugging Face directory ends with a merged export and a PEFT adapter."""

import json
import os
import sys

import flax.linen as nn
import hf_testing
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import peft
import pytest
import torch
import transformers
from train_testing import SyntheticBatches, read_metrics, tiny_config

from langshift.models import lora as lora_lib
from langshift.models.llama import abstract_params
from langshift.parallel import sharding as sharding_lib
from langshift.parallel.mesh import create_mesh
from langshift.train import checkpointing, optimizer
from langshift.train.trainer import resolve_model_config, train_and_evaluate

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "data"))
import data_fixtures  # noqa: E402


def lora_config(**train):
  config = tiny_config(trainable="lora", **train)
  config.train.lora.update(rank=4, alpha=8.0, dropout=0.1)
  config.model.param_dtype = "bfloat16"  # the frozen base in bf16, adapters in fp32
  config.optimizer.learning_rate = 1e-2
  return config


def _run(config, workdir, **kw):
  it = SyntheticBatches(
      config.train.global_batch_size, config.train.seq_len, config.model.vocab_size, **kw
  )
  return train_and_evaluate(config, str(workdir), train_iter=it)


def _state(workdir):
  mngr = checkpointing.make_manager(str(workdir), 1, 2, False)
  return mngr.restore(
      mngr.latest_step(), args=ocp.args.Composite(state=ocp.args.StandardRestore())
  )["state"]


def _flat(tree):
  return {
      optimizer.param_path(p): np.asarray(x)
      for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
  }


def test_only_adapters_train_and_hold_optimizer_state(tmp_path):
  config = lora_config(steps=12)
  _run(config, tmp_path / "lora")
  _run(lora_config(steps=0), tmp_path / "start")
  after, before = _flat(_state(tmp_path / "lora")["params"]), _flat(
      _state(tmp_path / "start")["params"]
  )
  changed = {k for k in after if not np.array_equal(after[k], before[k])}
  adapters = {k for k in after if k.endswith(("/lora_a", "/lora_b"))}
  # Attention and MLP projections of the (scanned) layers: 7 kernels x (A, B).
  assert len(adapters) == 14 and changed == adapters
  for k, v in after.items():
    assert v.dtype == (np.float32 if k in adapters else np.dtype(jnp.bfloat16)), k
  moments = [x for x in jax.tree.leaves(_state(tmp_path / "lora")["opt_state"]) if np.ndim(x) > 0]
  adapter_sizes = sum(after[k].size for k in adapters)
  assert sum(m.size for m in moments) == 2 * adapter_sizes  # Adam's mu and nu, adapters only
  losses = [r["train/loss"] for r in read_metrics(tmp_path / "lora") if "train/loss" in r]
  assert losses[-1] < losses[0] - 0.1  # the adapters learn (random base: slowly)


def test_killed_lora_run_resumes_to_the_uninterrupted_result(tmp_path):
  config = lora_config(steps=8, microbatches=2)
  _run(config, tmp_path / "straight")
  summary = _run(config, tmp_path / "resumed", sigterm_at=4)
  assert summary["stop_reason"] == "preempted" and summary["step"] == 5
  summary = _run(config, tmp_path / "resumed")
  assert summary["start_step"] == 5 and summary["step"] == 8
  a, b = _flat(_state(tmp_path / "straight")["params"]), _flat(
      _state(tmp_path / "resumed")["params"]
  )
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_adapters_shard_like_their_kernels():
  config = lora_config()
  config.train.lora.targets = ("attention", "mlp")
  cfg = lora_lib.with_lora(resolve_model_config(config), config.train.lora)
  mesh = create_mesh({"data": 1, "fsdp": 4, "tensor": 2}, devices=jax.devices()[:8])
  specs = nn.get_partition_spec(abstract_params(cfg))
  shard = sharding_lib.logical_shardings(
      abstract_params(cfg), mesh, sharding_lib.DEFAULT_LOGICAL_RULES
  )
  for block, proj, in_axes in (
      ("self_attn", "q_proj", 1),
      ("self_attn", "o_proj", 2),
      ("mlp", "down_proj", 1),
  ):
    kernel = shard["layers"][block][proj]["kernel"].spec
    a = shard["layers"][block][proj]["lora_a"].spec
    b = shard["layers"][block][proj]["lora_b"].spec
    # [layers, in..., out...] -> A [layers, in..., rank], B [layers, rank, out...]
    assert tuple(a) == tuple(kernel[: 1 + in_axes]) + (None,), (proj, a, kernel)
    assert tuple(b) == (kernel[0], None) + tuple(kernel[1 + in_axes :]), (proj, b, kernel)
    assert specs["layers"][block][proj]["lora_a"][-1] is None


def test_lora_run_from_hf_exports_merged_model_and_peft_adapter(tmp_path):
  base = hf_testing.make_hf_model("llama31", tmp_path / "base", vocab_size=512)
  config = lora_config(steps=3)
  config.tokenizer = data_fixtures.write_bpe_tokenizer(tmp_path / "tok")
  for k in (
      "vocab_size",
      "hidden_size",
      "intermediate_size",
      "num_layers",
      "num_heads",
      "num_kv_heads",
  ):
    config.model[k] = None
  config.model.param_dtype = "float32"
  config.init_from_hf = str(tmp_path / "base")
  config.train.lora.targets = ("attention", "mlp", "lm_head")
  config.checkpoint.update(export_hf_at_end=True, export_dtype="float32")
  it = SyntheticBatches(8, 16, 512)
  summary = train_and_evaluate(config, str(tmp_path / "run"), train_iter=it)
  tokens = np.random.default_rng(0).integers(0, 512, size=(2, 11))
  merged = transformers.AutoModelForCausalLM.from_pretrained(
      summary["hf_export"], dtype=torch.float32, attn_implementation="eager"
  )
  base_logits = hf_testing.hf_logits(base, tokens)
  with_adapter = peft.PeftModel.from_pretrained(base, summary["peft_adapter"]).eval()
  ours = hf_testing.hf_logits(with_adapter, tokens)
  assert np.abs(ours - base_logits).max() > 1e-3  # three steps moved the adapters
  np.testing.assert_allclose(hf_testing.hf_logits(merged, tokens), ours, atol=1e-4, rtol=0)
  adapter_cfg = json.loads(open(summary["peft_adapter"] + "/adapter_config.json").read())
  assert adapter_cfg["base_model_name_or_path"] == str(tmp_path / "base")


def test_lora_target_matching_nothing_fails_before_training(tmp_path):
  config = lora_config()
  config.train.lora.targets = ("attention", "cross_attn/q_proj")
  with pytest.raises(ValueError, match=r"'cross_attn/q_proj' matches no linear kernel"):
    _run(config, tmp_path)
  assert not (tmp_path / "checkpoints").exists()
