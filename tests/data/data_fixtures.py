"""Helpers of the data tests: tiny tokenizers trained in-process, JSONL writers.

A uniquely named module (not `conftest`) so that `import` finds it whatever else is on the path.
"""

import io
import json
import os

CORPUS = [
    "The quick brown fox jumps over the lazy dog. It was a sunny day in the park.",
    "Быстрая коричневая лиса прыгает через ленивую собаку. Был солнечный день.",
    "敏捷的棕色狐狸跳過了懶狗。那是公園裡陽光明媚的一天。",
    "Paragraph one is here.\n\nParagraph two follows it.\nAnd a third line ends it.",
    "Numbers 12345 and symbols: <tag> | pipes, * stars - dashes # hashes!",
] * 20

SPECIAL_TOKENS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|im_start|>",
    "<|im_end|>",
    "<s>",
    "</s>",
    "<|end_of_turn|>",
    "<pad>",
]

# A Llama-3-style template written for these tests (trim filter, loop, generation prompt).
LLAMA3_STYLE_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)


def write_bpe_tokenizer(
    directory, chat_template=LLAMA3_STYLE_TEMPLATE, bos="<|begin_of_text|>", eos="<|eot_id|>"
):
  """A byte-level BPE tokenizer (Llama-3 style) with a BOS-adding post-processor."""
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
      vocab_size=400,
      special_tokens=SPECIAL_TOKENS,
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
      show_progress=False,
  )
  tok.train_from_iterator(CORPUS, trainer)
  bos_id = tok.token_to_id(bos)
  tok.post_processor = processors.TemplateProcessing(
      single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)]
  )
  os.makedirs(directory, exist_ok=True)
  tok.save(os.path.join(directory, "tokenizer.json"))
  config = {
      "tokenizer_class": "PreTrainedTokenizerFast",
      "bos_token": bos,
      "eos_token": eos,
      "pad_token": "<pad>",
      "clean_up_tokenization_spaces": False,
      "model_max_length": 4096,
  }
  if chat_template is not None:
    config["chat_template"] = chat_template
  with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
    json.dump(config, f)
  return str(directory)


def write_sentencepiece_model(path):
  import sentencepiece as spm

  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(CORPUS),
      model_writer=model,
      vocab_size=600,
      model_type="bpe",
      byte_fallback=True,
      split_digits=True,
      character_coverage=1.0,
      minloglevel=2,
      remove_extra_whitespaces=False,
      normalization_rule_name="identity",
      user_defined_symbols=["[INST]", "[/INST]"],
  )
  with open(path, "wb") as f:
    f.write(model.getvalue())
  return str(path)


def write_jsonl(path, records):
  with open(path, "w", encoding="utf-8") as f:
    for r in records:
      f.write(json.dumps(r, ensure_ascii=False) + "\n")
  return str(path)
