"""A tiny random `transformers` Llama and the same weights as langshift decoder params (fp32).

Converted here by hand, so generation parity does not depend on the checkpoint importer.
"""

import numpy as np
import torch
import transformers

from langshift.models.config import ModelConfig


def tiny_hf_llama(seed=0, vocab_size=97, eos_token_id=2):
  torch.manual_seed(seed)
  hf_config = transformers.LlamaConfig(
      vocab_size=vocab_size,
      hidden_size=32,
      intermediate_size=64,
      num_hidden_layers=2,
      num_attention_heads=4,
      num_key_value_heads=2,
      max_position_embeddings=128,
      rms_norm_eps=1e-5,
      rope_theta=10000.0,
      tie_word_embeddings=False,
      bos_token_id=1,
      eos_token_id=eos_token_id,
      pad_token_id=0,
  )
  model = transformers.LlamaForCausalLM(hf_config).eval()
  with torch.no_grad():  # Larger weights than the 0.02 init make greedy paths less degenerate.
    for p in model.parameters():
      if p.dim() == 2:
        p.normal_(0.0, 0.2)
  config = ModelConfig(
      vocab_size=vocab_size,
      hidden_size=32,
      intermediate_size=64,
      num_layers=2,
      num_heads=4,
      num_kv_heads=2,
      max_position_embeddings=128,
      bos_token_id=1,
      eos_token_id=eos_token_id,
      pad_token_id=0,
  )
  return model, config, params_from_hf(model, config)


def params_from_hf(model, config):
  sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
  d, h, kv, hd = config.hidden_size, config.num_heads, config.num_kv_heads, config.dim_per_head

  def stack(fn):
    return np.stack([fn(i) for i in range(config.num_layers)])

  def w(i, name):
    return sd[f"model.layers.{i}.{name}.weight"]

  layers = {
      "input_layernorm": {"scale": stack(lambda i: w(i, "input_layernorm"))},
      "post_attention_layernorm": {"scale": stack(lambda i: w(i, "post_attention_layernorm"))},
      "self_attn": {
          "q_proj": {"kernel": stack(lambda i: w(i, "self_attn.q_proj").T.reshape(d, h, hd))},
          "k_proj": {"kernel": stack(lambda i: w(i, "self_attn.k_proj").T.reshape(d, kv, hd))},
          "v_proj": {"kernel": stack(lambda i: w(i, "self_attn.v_proj").T.reshape(d, kv, hd))},
          "o_proj": {"kernel": stack(lambda i: w(i, "self_attn.o_proj").T.reshape(h, hd, d))},
      },
      "mlp": {
          name: {"kernel": stack(lambda i, n=name: w(i, f"mlp.{n}").T)}
          for name in ("gate_proj", "up_proj", "down_proj")
      },
  }
  return {
      "embed_tokens": {"embedding": sd["model.embed_tokens.weight"]},
      "layers": layers,
      "norm": {"scale": sd["model.norm.weight"]},
      "lm_head": {"kernel": sd["lm_head.weight"].T},
  }
