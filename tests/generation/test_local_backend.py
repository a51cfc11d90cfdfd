import json

import jax
import numpy as np
import pytest
import transformers
from tiny_llama_hf import tiny_hf_llama
from toy_tokenizer import toy_tokenizer

from langshift.generation.chat_render import chat_renderer
from langshift.generation.decode import make_generate_fn
from langshift.generation.interface import GenerationOptions
from langshift.generation.local_backend import LocalGenerator, left_pad
from langshift.tokenization.tokenizer import load_tokenizer

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
LLAMA3 = (
    "{{ bos_token }}{% for message in messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


def tokenizer_dir(directory, tok, chat_template):
  """`tok` saved as an HF tokenizer directory with <s>/</s> and `chat_template`."""
  directory.mkdir(parents=True, exist_ok=True)
  tok.save(str(directory / "tokenizer.json"))
  (directory / "tokenizer_config.json").write_text(
      json.dumps(
          {
              "tokenizer_class": "PreTrainedTokenizerFast",
              "bos_token": "<s>",
              "eos_token": "</s>",
              "chat_template": chat_template,
          }
      )
  )
  return str(directory)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  _, config, params = tiny_hf_llama(seed=2)
  tok = toy_tokenizer(97)
  tokenizer = load_tokenizer(tokenizer_dir(tmp_path_factory.mktemp("tok"), tok, CHATML))
  assert tokenizer.bos_id == 1 and tokenizer.eos_ids == (2,)
  return config, params, tok, tokenizer


def test_text_generation_matches_the_token_level_loop(setup):
  config, params, tok, tokenizer = setup
  gen = LocalGenerator(config, params, tokenizer, batch_size=4, length_bucket=16)
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


def test_chat_prompt_is_rendered_like_transformers_apply_chat_template(setup, tmp_path):
  *_, tok, _ = setup
  messages = [
      {"role": "system", "content": "Be brief. "},
      {"role": "user", "content": "  Привет, мир!\n"},
  ]
  for name, template in (("chatml", CHATML), ("llama3", LLAMA3)):
    directory = tokenizer_dir(tmp_path / name, tok, template)
    hf_tok = transformers.AutoTokenizer.from_pretrained(directory)
    want = hf_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert chat_renderer(load_tokenizer(directory))(messages) == want


def test_chat_generation_is_completion_of_the_rendered_template(setup):
  config, params, _, tokenizer = setup
  gen = LocalGenerator(config, params, tokenizer, batch_size=4, length_bucket=16, add_bos=False)
  conv = [{"role": "user", "content": "the cat"}]
  opts = GenerationOptions(max_new_tokens=5)
  out = gen.chat([conv, conv], opts)
  assert out[0] == out[1] == gen.complete([gen.render_chat(conv)], opts)[0]


def test_answers_drop_special_tokens(setup, monkeypatch):
  """Generated special tokens (a chat model's end-of-turn that is not a stop id) are not text."""
  config, params, tok, tokenizer = setup
  gen = LocalGenerator(config, params, tokenizer, batch_size=4, length_bucket=16)
  ids = [1] + tok.encode("the cat", add_special_tokens=False).ids + [0, 3]
  monkeypatch.setattr(gen, "generate_tokens", lambda token_lists, options: [ids])
  assert "<s>" in tokenizer.decode(ids)
  assert gen.complete(["a"], GenerationOptions(max_new_tokens=4)) == [
      tok.decode(ids, skip_special_tokens=True)
  ]
