import jax
import numpy as np
import pytest
import transformers

from langshift.generation.chat_render import chat_renderer
from langshift.generation.decode import make_generate_fn
from langshift.generation.interface import GenerationOptions
from langshift.generation.local_backend import LocalGenerator, left_pad
from langshift.generation.tokenizer_adapter import TokenizerAdapter
from tiny_llama_hf import tiny_hf_llama
from toy_tokenizer import toy_tokenizer

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + "
          "message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
LLAMA3 = ("{{ bos_token }}{% for message in messages %}{% set content = '<|start_header_id|>' + "
          "message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' %}"
          "{{ content }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")


@pytest.fixture(scope="module")
def setup():
  _, config, params = tiny_hf_llama(seed=2)
  tok = toy_tokenizer(97)
  adapter = TokenizerAdapter(tok, chat_template=CHATML,
                             special_tokens_map={"bos_token": "<s>", "eos_token": "</s>"})
  assert adapter.bos_id == 1 and adapter.eos_ids == (2,)
  return config, params, tok, adapter


def test_text_generation_matches_the_token_level_loop(setup):
  config, params, tok, adapter = setup
  gen = LocalGenerator(config, params, adapter, batch_size=4, length_bucket=16)
  prompts = ["the cat sat", "a dog", "we should go home now.", "is it"]
  texts = gen.complete(prompts, GenerationOptions(max_new_tokens=6))
  ids = [[1] + tok.encode(p, add_special_tokens=False).ids for p in prompts]
  tokens, segs = left_pad(ids, 16, 4, 0)
  out = make_generate_fn(config, 6, stop_token_ids=(2,))(params, tokens, segs, jax.random.key(0))
  for i, text in enumerate(texts):
    n = int(out.lengths[i]) - int(out.stopped[i])
    assert text == tok.decode(np.asarray(out.tokens)[i, :n].tolist(), skip_special_tokens=True)
  # More prompts than one batch: split into batches, same answers.
  assert gen.complete(prompts * 2, GenerationOptions(max_new_tokens=6)) == texts * 2


def test_chat_prompt_is_rendered_like_transformers_apply_chat_template(setup):
  *_, tok, _ = setup
  hf_tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>",
                                                eos_token="</s>")
  messages = [{"role": "system", "content": "Be brief. "},
              {"role": "user", "content": "  Привет, мир!\n"}]
  for template in (CHATML, LLAMA3):
    want = hf_tok.apply_chat_template(messages, chat_template=template, tokenize=False,
                                      add_generation_prompt=True)
    adapter = TokenizerAdapter(tok, chat_template=template,
                               special_tokens_map={"bos_token": "<s>", "eos_token": "</s>"})
    assert chat_renderer(adapter)(messages) == want


def test_chat_generation_is_completion_of_the_rendered_template(setup):
  config, params, _, adapter = setup
  gen = LocalGenerator(config, params, adapter, batch_size=4, length_bucket=16, add_bos=False)
  conv = [{"role": "user", "content": "the cat"}]
  opts = GenerationOptions(max_new_tokens=5)
  out = gen.chat([conv, conv], opts)
  assert out[0] == out[1] == gen.complete([gen.render_chat(conv)], opts)[0]
