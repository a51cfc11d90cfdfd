"""Export to a Hugging Face directory and back: transformers must load it exactly."""

import json
import os

import hf_testing
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from langshift.checkpoints.hf_export import export_hf_model
from langshift.checkpoints.hf_import import load_hf_model


@pytest.mark.parametrize("kind", ["llama31", "qwen2", "tied"])
def test_export_loads_in_transformers_with_identical_logits(kind, tmp_path):
  src, out = tmp_path / "src", tmp_path / "out"
  hf_testing.make_hf_model(kind, src)
  (src / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 64}))
  cfg, params = load_hf_model(str(src))
  # A tiny shard limit forces a multi-file export with an index.
  export_hf_model(
      params, cfg, str(out), tokenizer_dir=str(src), dtype="float32", max_shard_bytes=20_000
  )
  assert (out / "model.safetensors.index.json").exists()
  assert (out / "generation_config.json").exists() and (out / "tokenizer_config.json").exists()
  model, info = transformers.AutoModelForCausalLM.from_pretrained(
      str(out), output_loading_info=True, dtype=torch.float32, attn_implementation="eager"
  )
  assert not info["missing_keys"] and not info["unexpected_keys"], info
  assert not info["mismatched_keys"], info
  tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, size=(2, 20))
  from langshift.models.llama import LlamaDecoder

  ours = np.asarray(LlamaDecoder(cfg).apply({"params": params}, jnp.asarray(tokens)))
  np.testing.assert_allclose(hf_testing.hf_logits(model, tokens), ours, atol=1e-4, rtol=0)
  # Our importer reads the sharded directory (index + several files) back exactly.
  _, again = load_hf_model(str(out))
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(again)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("param_dtype", ["float32", "bfloat16"])
def test_import_export_import_is_bit_identical(param_dtype, tmp_path):
  hf_testing.make_hf_model(
      "mistral",
      tmp_path / "src",
      dtype=torch.bfloat16 if param_dtype == "bfloat16" else torch.float32,
  )
  cfg, p1 = load_hf_model(str(tmp_path / "src"), param_dtype=param_dtype)
  export_hf_model(p1, cfg, str(tmp_path / "out"), dtype=None)
  cfg2, p2 = load_hf_model(str(tmp_path / "out"), param_dtype=param_dtype)
  assert cfg2 == cfg
  for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(np.asarray(a).view(np.uint8), np.asarray(b).view(np.uint8))
  # And the exported bytes equal the source file's tensors (the writer is lossless).
  from langshift.checkpoints.safetensors_io import SafetensorsCheckpoint

  src, out = SafetensorsCheckpoint(str(tmp_path / "src")), SafetensorsCheckpoint(
      str(tmp_path / "out")
  )
  assert sorted(src.keys()) == sorted(out.keys())
  for name in src.keys():
    np.testing.assert_array_equal(src.get(name), out.get(name))


def test_exported_config_roundtrips_rope_and_bias_fields(tmp_path):
  hf_testing.make_hf_model("llama31", tmp_path / "src")
  cfg, params = load_hf_model(str(tmp_path / "src"))
  export_hf_model(params, cfg, str(tmp_path / "out"))
  hf = transformers.AutoConfig.from_pretrained(str(tmp_path / "out"))
  src = transformers.AutoConfig.from_pretrained(str(tmp_path / "src"))
  for field in (
      "rope_parameters",
      "head_dim",
      "num_key_value_heads",
      "rms_norm_eps",
      "tie_word_embeddings",
      "attention_bias",
      "vocab_size",
      "eos_token_id",
  ):
    assert getattr(hf, field) == getattr(src, field), field
  written = json.loads((tmp_path / "out" / "config.json").read_text())
  assert written["torch_dtype"] == "bfloat16"
  assert os.path.getsize(tmp_path / "out" / "model.safetensors") < os.path.getsize(
      tmp_path / "src" / "model.safetensors"
  )  # bf16 export is half the fp32 source


@pytest.mark.parametrize("scan_layers", [True, False])
def test_host_load_gives_numpy_leaves_equal_to_the_device_load(scan_layers, tmp_path):
  hf_testing.make_hf_model("llama31", tmp_path / "src")
  cfg, on_device = load_hf_model(
      str(tmp_path / "src"), scan_layers=scan_layers, param_dtype="bfloat16"
  )
  _, on_host = load_hf_model(
      str(tmp_path / "src"), scan_layers=scan_layers, param_dtype="bfloat16", on_host=True
  )
  assert jax.tree.structure(on_host) == jax.tree.structure(on_device)
  for host, device in zip(jax.tree.leaves(on_host), jax.tree.leaves(on_device)):
    assert isinstance(host, np.ndarray) and host.dtype == device.dtype
    np.testing.assert_array_equal(host, np.asarray(device))
  # Exporting host leaves (what LEP's stages do) writes the same checkpoint.
  export_hf_model(on_host, cfg, str(tmp_path / "a"), dtype=None)
  export_hf_model(on_device, cfg, str(tmp_path / "b"), dtype=None)
  assert (tmp_path / "a" / "model.safetensors").read_bytes() == (
      tmp_path / "b" / "model.safetensors"
  ).read_bytes()
