"""`load_tokenizer` gives the ids of the `tokenizers`/`sentencepiece` libraries and transformers."""

import json
import os

import pytest

from langshift.tokenization.tokenizer import HFTokenizer, SentencePieceTokenizer, load_tokenizer

TEXTS = [
    "Hello world!",
    "Привет, мир! Как дела?\n\nНовый абзац.",
    "  spaces\tand tabs\r\n",
    "敏捷的棕色狐狸",
    "<|eot_id|> inside text <|im_start|>",
    "",
    "digits 0123456789 ü é",
]


def test_hf_tokenizer_matches_tokenizers_and_transformers(bpe_dir):
  import tokenizers
  from transformers import AutoTokenizer

  tok = load_tokenizer(bpe_dir)
  assert isinstance(tok, HFTokenizer)
  ref = tokenizers.Tokenizer.from_file(os.path.join(bpe_dir, "tokenizer.json"))
  auto = AutoTokenizer.from_pretrained(bpe_dir)
  for text in TEXTS:
    assert tok.encode(text) == ref.encode(text, add_special_tokens=False).ids
    assert tok.encode(text) == auto(text, add_special_tokens=False)["input_ids"]
    assert tok.encode(text, add_special_tokens=True) == auto(text)["input_ids"]
    ids = tok.encode(text, add_special_tokens=True)
    assert tok.decode(ids) == ref.decode(ids, skip_special_tokens=False)
    assert tok.decode(ids, skip_special_tokens=True) == auto.decode(ids, skip_special_tokens=True)
  assert tok.encode_batch(TEXTS) == [tok.encode(t) for t in TEXTS]
  assert tok.encode_batch(TEXTS, add_special_tokens=True) == [auto(t)["input_ids"] for t in TEXTS]
  assert tok.vocab_size == len(auto)
  assert tok.bos_id == auto.bos_token_id and tok.eos_id == auto.eos_token_id
  assert tok.pad_id == auto.pad_token_id
  assert set(auto.all_special_tokens) <= set(tok.special_tokens)
  for i in (0, 5, 300, tok.vocab_size - 1):
    assert tok.id_to_token(i) == auto.convert_ids_to_tokens(i)
    assert tok.token_to_id(tok.id_to_token(i)) == i
  assert tok.token_to_id("surely-not-a-token") is None
  assert tok.chat_template == auto.chat_template


def test_offsets_cover_the_text(bpe_tokenizer, sp_model):
  for tok in (bpe_tokenizer, load_tokenizer(sp_model)):
    for text, (ids, offsets) in zip(TEXTS, tok.encode_batch_with_offsets(TEXTS)):
      assert ids == tok.encode(text)
      assert len(offsets) == len(ids)
      starts = [s for s, _ in offsets]
      assert starts == sorted(starts) and all(0 <= s <= e <= len(text) for s, e in offsets)


def test_sentencepiece_matches_library(sp_model):
  import sentencepiece as spm

  tok = load_tokenizer(sp_model)
  assert isinstance(tok, SentencePieceTokenizer)
  ref = spm.SentencePieceProcessor(model_file=sp_model)
  for text in TEXTS:
    assert tok.encode(text) == ref.encode(text)
    assert tok.encode(text, add_special_tokens=True) == [ref.bos_id()] + ref.encode(text)
    assert tok.decode(tok.encode(text)) == ref.decode(ref.encode(text))
  assert tok.encode_batch(TEXTS) == ref.encode(TEXTS)
  assert (tok.bos_id, tok.eos_id, tok.pad_id) == (ref.bos_id(), ref.eos_id(), None)
  assert tok.vocab_size == ref.get_piece_size()
  assert tok.id_to_token(7) == ref.id_to_piece(7) and tok.token_to_id(ref.id_to_piece(7)) == 7
  assert tok.token_to_id("surely-not-a-piece") is None
  assert {"<s>", "</s>"} <= set(tok.special_tokens)
  assert tok.chat_template is None
  # A directory holding only tokenizer.model loads the same model.
  assert load_tokenizer(os.path.dirname(sp_model)).encode("abc") == tok.encode("abc")


def test_chat_template_file_and_list_forms(tmp_path, bpe_dir):
  import shutil

  d = tmp_path / "tok"
  shutil.copytree(bpe_dir, d)
  config = json.loads((d / "tokenizer_config.json").read_text())
  config["chat_template"] = [
      {"name": "tool_use", "template": "T"},
      {"name": "default", "template": "D"},
  ]
  (d / "tokenizer_config.json").write_text(json.dumps(config))
  assert load_tokenizer(str(d)).chat_template == "D"
  (d / "chat_template.jinja").write_text("J")  # newer exports: the file wins
  assert load_tokenizer(str(d)).chat_template == "J"


def test_missing_tokenizer_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="tokenizer.json"):
    load_tokenizer(str(tmp_path))


def test_sentencepiece_control_strings_become_ids_like_transformers(tmp_path, sp_model):
  import shutil

  from transformers import AutoTokenizer

  from langshift.tokenization import chat_templates as ct

  shutil.copy(sp_model, tmp_path / "tokenizer.model")
  (tmp_path / "tokenizer_config.json").write_text(
      json.dumps(
          {
              "tokenizer_class": "LlamaTokenizer",
              "bos_token": "<s>",
              "eos_token": "</s>",
              "unk_token": "<unk>",
              "chat_template": ct.BUILTIN_TEMPLATES["mistral"],
          }
      )
  )
  tok, auto = load_tokenizer(str(tmp_path)), AutoTokenizer.from_pretrained(str(tmp_path))
  conv = [
      {"role": "user", "content": "Hello world"},
      {"role": "assistant", "content": "Answer."},
      {"role": "user", "content": "Быстрая лиса?"},
      {"role": "assistant", "content": "Да"},
  ]
  text = ct.render_chat(conv, tok.chat_template, special_tokens_map=tok.special_tokens_map)
  assert text == auto.apply_chat_template(conv, tokenize=False)
  want = auto.apply_chat_template(conv, tokenize=True, return_dict=False)
  assert tok.encode(text) == list(want) and want.count(tok.bos_id) == 1
  ((ids, offsets),) = tok.encode_batch_with_offsets([text])
  assert ids == list(want) and [text[s:e] for s, e in offsets][:2] == ["<s>", "[INST]"]
