"""Tiny fixtures for evaluation tests: a UTF-8 byte tokenizer and a random tiny decoder."""

import flax.linen as nn
import jax
import numpy as np

from langshift.models.config import ModelConfig
from langshift.models.llama import abstract_params

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class ByteTokenizer:
  """ids 0/1/2 = pad/BOS/EOS, then the 256 byte values; `adds_bos`: its special-token encoding
  starts with BOS (as Llama's does)."""

  bos_id, eos_ids, special_tokens_map = 1, (2,), {}
  chat_template = CHATML

  def __init__(self, adds_bos: bool = False):
    self.adds_bos = adds_bos

  def encode(self, text, add_special_tokens=False):
    ids = [b + 3 for b in text.encode("utf-8")]
    return [self.bos_id] + ids if add_special_tokens and self.adds_bos else ids

  def decode(self, ids, skip_special_tokens=False):
    del skip_special_tokens  # pad/BOS/EOS are never rendered
    return bytes(i - 3 for i in ids if i >= 3).decode("utf-8", errors="replace")


def tiny_model(seed=0):
  config = ModelConfig(
      vocab_size=259,
      hidden_size=32,
      intermediate_size=64,
      num_layers=2,
      num_heads=4,
      num_kv_heads=2,
      max_position_embeddings=2048,
      bos_token_id=1,
      eos_token_id=2,
      pad_token_id=0,
  )
  # Shapes from an abstract init, values from numpy: no compile of the init function.
  shapes = nn.unbox(abstract_params(config))
  rng = np.random.default_rng(seed)
  params = jax.tree_util.tree_map_with_path(
      lambda path, s: (
          np.ones(s.shape, np.float32)
          if path[-1].key == "scale"
          else rng.normal(0.0, 0.1, s.shape).astype(np.float32)
      ),
      shapes,
  )
  return config, params
