"""Tiny seeded corpora and tokenizers for the tokenizer-adaptation tests (no files, no network)."""

import random

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

RUSSIAN = (
    "привет мир как дела хорошо спасибо сегодня погода очень тёплая солнце светит ярко "
    "город москва река волга книга читать писать говорить думать работа дом улица машина "
    "программа пакет система сервер файл команда установка настройка"
).split()
ENGLISH = (
    "the quick brown fox jumps over a lazy dog while system packages install and the "
    "server reads every file of the configuration"
).split()


def sentences(words, n, seed, digits=True):
  rng = random.Random(seed)
  out = []
  for _ in range(n):
    s = " ".join(rng.choice(words) for _ in range(rng.randint(3, 12)))
    if digits and rng.random() < 0.3:
      s += f" {rng.randint(0, 99999)}"
    out.append(s.capitalize() + rng.choice([".", "!", "?", ""]))
  return out


def byte_level_bpe(texts, vocab_size=400, specials=("<|endoftext|>", "<|im_start|>", "<|im_end|>")):
  """A GPT-2-style byte-level BPE (the SmolLM2 / Llama-3 family) trained in memory."""
  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
      vocab_size=vocab_size,
      special_tokens=list(specials),
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
      show_progress=False,
  )
  tok.train_from_iterator(texts, trainer)
  return tok
