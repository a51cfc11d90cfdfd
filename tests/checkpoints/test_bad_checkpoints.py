"""Bad input: one clear line naming the file and the field or tensor."""

import json

import hf_testing
import pytest

from langshift.checkpoints.hf_config import ConfigError, model_config_from_hf
from langshift.checkpoints.hf_import import load_hf_model
from langshift.checkpoints.safetensors_io import CheckpointFormatError, SafetensorsCheckpoint


@pytest.fixture(scope="module")
def good_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("good")
  hf_testing.make_hf_model("llama31", d)
  return d


def _copy(src, dst):
  dst.mkdir()
  for f in src.iterdir():
    (dst / f.name).write_bytes(f.read_bytes())
  return dst


def _one_line(e):
  msg = str(e.value)
  assert "\n" not in msg
  return msg


def test_missing_config(good_dir, tmp_path):
  d = _copy(good_dir, tmp_path / "m")
  (d / "config.json").unlink()
  with pytest.raises(ConfigError) as e:
    load_hf_model(str(d))
  assert "config.json" in _one_line(e) and "not found" in str(e.value)


def test_missing_weights(good_dir, tmp_path):
  d = _copy(good_dir, tmp_path / "m")
  (d / "model.safetensors").unlink()
  with pytest.raises(CheckpointFormatError) as e:
    load_hf_model(str(d))
  assert str(d) in _one_line(e) and "model.safetensors" in str(e.value)


def test_truncated_safetensors(good_dir, tmp_path):
  d = _copy(good_dir, tmp_path / "m")
  blob = (d / "model.safetensors").read_bytes()
  (d / "model.safetensors").write_bytes(blob[: len(blob) - 1000])
  with pytest.raises(CheckpointFormatError) as e:
    SafetensorsCheckpoint(str(d))
  assert "model.safetensors" in _one_line(e) and "truncated" in str(e.value)


def test_shape_contradicting_config(good_dir, tmp_path):
  d = _copy(good_dir, tmp_path / "m")
  cfg = json.loads((d / "config.json").read_text())
  cfg["intermediate_size"] = 128
  (d / "config.json").write_text(json.dumps(cfg))
  with pytest.raises(CheckpointFormatError) as e:
    load_hf_model(str(d))
  msg = _one_line(e)
  assert "model.safetensors" in msg and "mlp.gate_proj.weight" in msg and "(128, 64)" in msg


def test_missing_tensor(good_dir, tmp_path):
  import numpy as np

  from langshift.checkpoints.safetensors_io import write_safetensors

  d = _copy(good_dir, tmp_path / "m")
  ckpt = SafetensorsCheckpoint(str(d))
  tensors = {k: np.array(ckpt.get(k)) for k in ckpt.keys() if k != "model.norm.weight"}
  write_safetensors(str(d / "model.safetensors"), tensors)
  with pytest.raises(CheckpointFormatError) as e:
    load_hf_model(str(d))
  assert "model.norm.weight" in _one_line(e)


@pytest.mark.parametrize(
    "field,value,expect",
    [
        ("model_type", "gemma2", "'model_type'"),
        ("rope_scaling", {"rope_type": "yarn", "factor": 4.0}, "'rope_scaling.rope_type' = 'yarn'"),
        ("hidden_act", "gelu", "'hidden_act'"),
        ("quantization_config", {"quant_method": "gptq"}, "'quantization_config'"),
    ],
)
def test_unsupported_config_values_are_refused(field, value, expect):
  hf = {
      "model_type": "llama",
      "vocab_size": 8,
      "hidden_size": 8,
      "intermediate_size": 8,
      "num_hidden_layers": 1,
      "num_attention_heads": 2,
  }
  hf[field] = value
  with pytest.raises(ConfigError) as e:
    model_config_from_hf(hf, source="x/config.json")
  assert expect in _one_line(e) and "x/config.json" in str(e.value)


def test_llama3_rope_fields_are_required():
  hf = {
      "model_type": "llama",
      "vocab_size": 8,
      "hidden_size": 8,
      "intermediate_size": 8,
      "num_hidden_layers": 1,
      "num_attention_heads": 2,
      "rope_scaling": {"rope_type": "llama3", "factor": 8.0},
  }
  with pytest.raises(ConfigError, match="low_freq_factor"):
    model_config_from_hf(hf)
