"""Throughput of the input pipeline: read + tokenize + mix + pack, in tokens per second.

    python -m langshift.bench.input_pipeline --tokenizer /path/to/hf_dir_or.model
    python -m langshift.bench.input_pipeline --corpus '/corpora/ru/*.jsonl' --packing boundary

Without --corpus it writes a synthetic JSONL corpus (multilingual plain text plus chat records)
to a temporary directory; without --tokenizer it trains a small byte-level BPE there. The
figure to compare is `tokens/s`, against the training step's consumption (`--train_tokens_per_s`,
the demo config's CPU step is about 500 tokens/s): the pipeline must be at least 10x faster.
"""

from __future__ import annotations

import json
import os
import tempfile
import time

import numpy as np
from absl import app, flags

from langshift.data import config as config_lib
from langshift.data import pipeline
from langshift.tokenization.tokenizer import load_tokenizer

_TOKENIZER = flags.DEFINE_string("tokenizer", None, "HF tokenizer dir or SentencePiece .model.")
_CORPUS = flags.DEFINE_string(
    "corpus", None, "JSONL glob with a `text` field (default: synthetic)."
)
_CHAT_FRACTION = flags.DEFINE_float("chat_fraction", 0.3, "Weight of the chat source (synthetic).")
_SEQ_LEN = flags.DEFINE_integer("seq_len", 1024, "Row length.")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Rows per batch.")
_BATCHES = flags.DEFINE_integer("batches", 200, "Batches timed (after 2 warm-up batches).")
_PACKING = flags.DEFINE_enum("packing", "concat", config_lib.PACKINGS, "Packing mode.")
_THREADS = flags.DEFINE_integer("read_threads", 2, "data.read_threads")
_TRAIN_TPS = flags.DEFINE_float(
    "train_tokens_per_s", 500.0, "Training-step token consumption to compare against."
)

_WORDS = (
    "the language model adapts quickly to new text and keeps its english skills while "
    "learning embeddings for every token in the extended vocabulary . "
    "модель быстро учится новому языку и сохраняет навыки , обучая векторы новых токенов . "
    "模型 學習 新 語言 的 詞彙 並 保留 原有 的 能力 。"
).split()


def write_synthetic_corpus(directory: str, num_docs: int = 6000, seed: int = 0) -> tuple[str, str]:
  """Plain-text documents (paragraphs of random words) and single-turn chat records."""
  rng = np.random.default_rng(seed)
  text_path, chat_path = os.path.join(directory, "text.jsonl"), os.path.join(
      directory, "chat.jsonl"
  )
  with open(text_path, "w", encoding="utf-8") as f:
    for _ in range(num_docs):
      paragraphs = [
          " ".join(rng.choice(_WORDS, rng.integers(20, 120))) for _ in range(rng.integers(1, 6))
      ]
      f.write(json.dumps({"text": "\n\n".join(paragraphs)}, ensure_ascii=False) + "\n")
  with open(chat_path, "w", encoding="utf-8") as f:
    for _ in range(num_docs // 2):
      q, a = (" ".join(rng.choice(_WORDS, rng.integers(5, n))) for n in (30, 200))
      f.write(
          json.dumps(
              {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]},
              ensure_ascii=False,
          )
          + "\n"
      )
  return text_path, chat_path


def train_small_tokenizer(directory: str, corpus_path: str) -> str:
  """A 4k byte-level BPE with a ChatML template, for runs without --tokenizer."""
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # pylint: disable=import-outside-toplevel

  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
  with open(corpus_path, encoding="utf-8") as f:
    texts = [json.loads(line)["text"] for line in f]
  tok.train_from_iterator(
      texts,
      trainers.BpeTrainer(
          vocab_size=4096,
          special_tokens=specials,
          show_progress=False,
          initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
      ),
  )
  tok.save(os.path.join(directory, "tokenizer.json"))
  template = (
      "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
      "message['content'] + '<|im_end|>\\n' }}{% endfor %}"
      "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
  )
  with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
    json.dump(
        {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "chat_template": template}, f
    )
  return directory


def main(argv):
  del argv
  workdir = tempfile.mkdtemp(prefix="langshift_bench_")
  text_path, chat_path = write_synthetic_corpus(workdir)
  tokenizer_path = _TOKENIZER.value or train_small_tokenizer(workdir, text_path)
  tokenizer = load_tokenizer(tokenizer_path)

  data = config_lib.default_data_config()
  data.packing = _PACKING.value
  data.read_threads = _THREADS.value
  if _CHAT_FRACTION.value < 1:
    data.sources.text = config_lib.source_config(
        path=_CORPUS.value or text_path, weight=1.0 - _CHAT_FRACTION.value
    )
  if _CHAT_FRACTION.value > 0:
    data.sources.chat = config_lib.source_config(
        path=chat_path, template="chat", weight=_CHAT_FRACTION.value
    )
    if tokenizer.chat_template is None:
      data.chat_template = "chatml"

  start = time.perf_counter()
  it = pipeline.make_train_iterator(
      data, tokenizer, seq_len=_SEQ_LEN.value, global_batch_size=_BATCH.value, seed=0
  )
  for _ in range(2):
    next(it)
  setup = time.perf_counter() - start
  tokens = real = 0
  start = time.perf_counter()
  for _ in range(_BATCHES.value):
    batch = next(it)
    tokens += batch["inputs"].size
    real += int((batch["segment_ids"] > 0).sum())
  elapsed = time.perf_counter() - start
  it.close()
  tps = tokens / elapsed
  print(
      f"tokenizer: {tokenizer} | packing: {data.packing} | seq_len {_SEQ_LEN.value} x "
      f"batch {_BATCH.value} | read_threads {data.read_threads} | cpus {os.cpu_count()}"
  )
  print(f"setup + first 2 batches: {setup:.2f} s")
  print(
      f"tokens/s: {tps:,.0f}  (non-padding: {real / elapsed:,.0f}; "
      f"{_BATCHES.value} batches in {elapsed:.2f} s)"
  )
  print(f"vs training consumption {_TRAIN_TPS.value:,.0f} tokens/s: {tps / _TRAIN_TPS.value:,.0f}x")


if __name__ == "__main__":
  app.run(main)
