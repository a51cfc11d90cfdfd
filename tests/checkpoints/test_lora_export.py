"""LoRA exports against the references: PEFT loads the adapter directory onto the transformers
base model and computes langshift's logits; the merged export is a plain transformers model."""

import json

import hf_testing
import numpy as np
import peft
import pytest
import torch
import transformers
from lora_testing import adapted, lora_section, our_logits

from langshift.checkpoints import hf_import
from langshift.checkpoints.hf_export import export_hf_model
from langshift.checkpoints.peft_export import export_peft_adapter
from langshift.models import lora as lora_lib

CASES = {
    # Every attention and MLP projection and the output head, scanned layers.
    "all_linear": dict(
        section=lora_section(targets=("attention", "mlp", "lm_head")), scan_layers=True
    ),
    # First and last layer only (unscanned paths), embeddings trained in full (modules_to_save).
    "first_last_layers_and_embeddings": dict(
        section=lora_section(targets=(r"^layers_(0|2)/self_attn/[qv]_proj", r"^layers_2/mlp/")),
        scan_layers=False,
        modules_to_save=("embed_tokens", "lm_head"),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_peft_loads_adapter_with_langshift_logits(case, tmp_path):
  spec = CASES[case]
  base = hf_testing.make_hf_model("llama31", tmp_path / "base")
  cfg, params = adapted(tmp_path / "base", spec["section"], scan_layers=spec["scan_layers"])
  modules = spec.get("modules_to_save", ())
  if modules:  # the fully trained modules differ from the base
    rng = np.random.default_rng(1)
    params["embed_tokens"]["embedding"] = params["embed_tokens"]["embedding"] + rng.normal(
        0, 0.05, params["embed_tokens"]["embedding"].shape
    ).astype(np.float32)
    params["lm_head"]["kernel"] = params["lm_head"]["kernel"] * 1.5
  out = tmp_path / "adapter"
  export_peft_adapter(
      params, cfg, str(out), base_model=str(tmp_path / "base"), modules_to_save=modules
  )
  config = json.loads((out / "adapter_config.json").read_text())
  assert config["r"] == 4 and config["lora_alpha"] == 8.0
  tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, size=(2, 17))
  base_logits = hf_testing.hf_logits(base, tokens)
  model = peft.PeftModel.from_pretrained(base, str(out))
  model.eval()
  ours = our_logits(cfg, params, tokens)
  assert np.abs(ours - base_logits).max() > 0.05  # the adapters change the function
  np.testing.assert_allclose(hf_testing.hf_logits(model, tokens), ours, atol=1e-4, rtol=0)


def test_merged_export_is_a_plain_transformers_model(tmp_path):
  hf_testing.make_hf_model("llama31", tmp_path / "base")
  cfg, params = adapted(tmp_path / "base", lora_section(targets=("attention", "mlp", "lm_head")))
  export_hf_model(params, cfg, str(tmp_path / "merged"), dtype="float32")
  hf_cfg = json.loads((tmp_path / "merged" / "config.json").read_text())
  assert "lora" not in json.dumps(hf_cfg)
  model, info = transformers.AutoModelForCausalLM.from_pretrained(
      str(tmp_path / "merged"),
      output_loading_info=True,
      dtype=torch.float32,
      attn_implementation="eager",
  )
  assert not info["missing_keys"] and not info["unexpected_keys"], info
  tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, size=(2, 17))
  ours = our_logits(cfg, params, tokens)
  np.testing.assert_allclose(hf_testing.hf_logits(model, tokens), ours, atol=1e-4, rtol=0)


def test_adapter_export_onto_other_dimensions_names_the_value(tmp_path):
  hf_testing.make_hf_model("llama31", tmp_path / "base")
  hf_testing.make_hf_model("llama31", tmp_path / "wider", intermediate_size=128)
  cfg, params = adapted(tmp_path / "base", lora_section())
  with pytest.raises(ValueError, match=r"wider/config.json: intermediate_size=128 .*=112"):
    export_peft_adapter(params, cfg, str(tmp_path / "a"), base_model=str(tmp_path / "wider"))


def test_bad_lora_settings_are_one_line_errors(tmp_path):
  hf_testing.make_hf_model("llama31", tmp_path / "base")
  base_cfg = hf_import.load_hf_model(str(tmp_path / "base"))[0]
  with pytest.raises(ValueError, match=r"train.lora.targets: pattern 'mlp/nothing' matches no"):
    lora_lib.with_lora(base_cfg, lora_section(targets=("attention", "mlp/nothing")))
  # k_proj is 64 x 48 (2 kv heads of 24): rank 50 exceeds its smaller side.
  with pytest.raises(ValueError, match=r"train.lora.rank=50 is larger than the 64x48 matrix"):
    lora_lib.with_lora(base_cfg, lora_section(rank=50))
