"""Chat templates render byte-identically to transformers' `apply_chat_template`; exact spans."""

import pytest
from data_fixtures import LLAMA3_STYLE_TEMPLATE, write_bpe_tokenizer

from langshift.data import examples, formatting
from langshift.tokenization import chat_templates as ct
from langshift.tokenization.tokenizer import load_tokenizer

CONVERSATIONS = [
    [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
    ],
    [
        {"role": "user", "content": "  Привет  "},
        {"role": "assistant", "content": "Здравствуйте.\n"},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
    ],
    [
        {"role": "user", "content": "Say <|eot_id|> literally"},
        {"role": "assistant", "content": "敏捷的棕色狐狸 <tag>"},
    ],
    [{"role": "user", "content": ""}, {"role": "assistant", "content": "Reply to nothing."}],
]
SYSTEM = [{"role": "system", "content": "Be brief."}]

# The built-in formats, written out by hand from each model family's published chat template
# (B/E = the tokenizer's bos/eos strings).
EXPECTED = {
    "llama3": "B<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\nHello! How can I help?<|eot_id|>",
    "mistral": "B[INST] Hi there [/INST]Hello! How can I help?E",
    "openchat": "BGPT4 Correct User: Hi there<|end_of_turn|>"
    "GPT4 Correct Assistant: Hello! How can I help?<|end_of_turn|>",
    "tulu": "B<|user|>\nHi there\n<|assistant|>\nHello! How can I help?E\n",
    "chatml": "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\nHello! How can I help?"
    "<|im_end|>\n",
}


@pytest.fixture(scope="module")
def s_tokenizers(tmp_path_factory):
  """(ours, transformers) for a tokenizer whose bos/eos are <s> / </s>."""
  from transformers import AutoTokenizer

  d = write_bpe_tokenizer(tmp_path_factory.mktemp("s_tok"), bos="<s>", eos="</s>")
  return load_tokenizer(d), AutoTokenizer.from_pretrained(d)


@pytest.fixture(scope="module")
def llama_tokenizers(bpe_dir):
  from transformers import AutoTokenizer

  return load_tokenizer(bpe_dir), AutoTokenizer.from_pretrained(bpe_dir)


@pytest.mark.parametrize("name", sorted(ct.BUILTIN_TEMPLATES))
def test_builtin_templates_match_transformers_and_published_formats(
    name, s_tokenizers, llama_tokenizers
):
  ours, auto = llama_tokenizers if name == "llama3" else s_tokenizers
  template = ct.BUILTIN_TEMPLATES[name]
  bos, eos = auto.bos_token, auto.eos_token
  got = ct.render_chat(CONVERSATIONS[0], template, special_tokens_map=ours.special_tokens_map)
  assert got == EXPECTED[name].replace("B", bos, 1).replace("E", eos)
  systems = [] if name in ("mistral", "openchat") else [SYSTEM]
  for conv in CONVERSATIONS + [s + c for s in systems for c in CONVERSATIONS[:2]]:
    for gen in (False, True):
      prompt = conv[:-1] if gen else conv
      want = auto.apply_chat_template(
          prompt, chat_template=template, tokenize=False, add_generation_prompt=gen
      )
      assert (
          ct.render_chat(
              prompt,
              template,
              special_tokens_map=ours.special_tokens_map,
              add_generation_prompt=gen,
          )
          == want
      )
    text, spans = ct.render_with_assistant_spans(
        conv, template, special_tokens_map=ours.special_tokens_map
    )
    ids = auto.apply_chat_template(conv, chat_template=template, tokenize=True, return_dict=False)
    assert list(examples.formatted_examples([(text, spans)], ours)[0]["tokens"]) == list(ids)


def test_tokenizer_own_template_matches_transformers(llama_tokenizers):
  ours, auto = llama_tokenizers
  template = ct.resolve_chat_template("tokenizer", ours.chat_template)
  assert template == LLAMA3_STYLE_TEMPLATE
  for conv in CONVERSATIONS + [SYSTEM + CONVERSATIONS[1]]:
    want = auto.apply_chat_template(conv, tokenize=False)
    assert ct.render_chat(conv, template, special_tokens_map=ours.special_tokens_map) == want
    want_ids = auto.apply_chat_template(conv, tokenize=True, return_dict=False)
    formatted = formatting.format_chat(conv, template, ours.special_tokens_map)
    assert list(examples.formatted_examples([formatted], ours)[0]["tokens"]) == list(want_ids)


def test_assistant_spans_are_the_assistant_turns(llama_tokenizers):
  ours, _ = llama_tokenizers
  conv = CONVERSATIONS[1]
  text, spans = ct.render_with_assistant_spans(
      conv, LLAMA3_STYLE_TEMPLATE, special_tokens_map=ours.special_tokens_map
  )
  assert [text[s:e] for s, e in spans] == ["Здравствуйте.<|eot_id|>", "4<|eot_id|>"]
  assert text[: spans[0][0]].endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


GENERATION_TAGGED = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{% if message['role'] == 'assistant' %}{% generation %}"
    "{{ message['content'] | trim + '<|eot_id|>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] | trim + '<|eot_id|>' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)


def test_masks_equal_transformers_assistant_masks(llama_tokenizers):
  """transformers tracks `{% generation %}` blocks; our prefix spans must give the same mask."""
  ours, auto = llama_tokenizers
  for conv in CONVERSATIONS:
    out = auto.apply_chat_template(
        conv,
        chat_template=GENERATION_TAGGED,
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
    )
    formatted = formatting.format_chat(conv, GENERATION_TAGGED, ours.special_tokens_map)
    example = examples.formatted_examples([formatted], ours)[0]
    assert list(example["tokens"]) == list(out["input_ids"])
    assert example["mask"].astype(int).tolist() == list(out["assistant_masks"])
    assert example["mask"].any()


def test_unlocatable_spans_raise(llama_tokenizers):
  ours, _ = llama_tokenizers
  # Earlier assistant turns render differently from the last one (like reasoning templates).
  rewriting = (
      "{% for message in messages %}{% if message['role'] == 'assistant' and not loop.last %}"
      "{{ 'A: [old]\n' }}{% else %}{{ message['role'][0] | upper + ': ' + "
      "message['content'] + '\n' }}{% endif %}{% endfor %}"
  )
  with pytest.raises(ct.ChatTemplateError, match="cannot locate the assistant span"):
    ct.render_with_assistant_spans(CONVERSATIONS[1], rewriting)
  # The template drops the assistant content altogether.
  with pytest.raises(ct.ChatTemplateError, match="cannot locate"):
    ct.render_with_assistant_spans(
        CONVERSATIONS[0], "{% for m in messages %}{{ m['role'] }}{% endfor %}"
    )
  with pytest.raises(ct.ChatTemplateError, match="no assistant turn"):
    formatting.format_chat(CONVERSATIONS[0][:1], LLAMA3_STYLE_TEMPLATE, ours.special_tokens_map)
  with pytest.raises(ct.ChatTemplateError, match="roles must alternate"):
    ct.render_chat(
        SYSTEM + CONVERSATIONS[0],
        ct.BUILTIN_TEMPLATES["mistral"],
        special_tokens_map={"bos_token": "<s>", "eos_token": "</s>"},
    )
  with pytest.raises(ct.ChatTemplateError, match="has no chat_template"):
    ct.resolve_chat_template("tokenizer", None)
  with pytest.raises(ct.ChatTemplateError, match="unknown chat template"):
    ct.resolve_chat_template("llama-3", None)


def test_assistant_turn_end_is_the_templates_closing_special_token():
  specials = ["<s>", "</s>", "<|eot_id|>", "<|end_of_text|>", "<|im_start|>", "<|im_end|>"]
  turn_end = {
      name: ct.assistant_turn_end(
          ct.BUILTIN_TEMPLATES[name],
          specials,
          {"bos_token": "<s>", "eos_token": "</s>"},
      )
      for name in ("llama3", "chatml", "mistral")
  }
  assert turn_end == {"llama3": "<|eot_id|>", "chatml": "<|im_end|>", "mistral": "</s>"}
  # A turn that ends in plain text, or a template that refuses the probe, has none.
  plain = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
  assert ct.assistant_turn_end(plain, specials) is None
  strict = "{{ raise_exception('no assistant turns') }}"
  assert ct.assistant_turn_end(strict, specials) is None
