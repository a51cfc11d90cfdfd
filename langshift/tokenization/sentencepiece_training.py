"""Training SentencePiece BPE / Unigram tokenizers on a target-language corpus (LEP: Tikhomirov &
Chernyshev 2024, arXiv:2412.21140).

The options are the ones the LEP tokenizers (and Llama-2 / Mistral before them) were trained with:
digits split into single pieces, byte fallback instead of <unk>, and no text normalisation, so that
the model round-trips every byte and the Hugging Face export reproduces its ids exactly.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

import sentencepiece as spm

MODEL_TYPES = ("bpe", "unigram")


def train_sentencepiece(
    texts: Iterable[str],
    *,
    model_type: str,
    vocab_size: int,
    character_coverage: float = 0.9995,
    num_threads: int = 2,
    max_sentence_length: int = 16384,
    **options,
) -> bytes:
  """Trains on `texts` (one sample per item, e.g. a paragraph) and returns the serialized model.

  `vocab_size` counts everything: <unk>/<s>/</s>, the 256 byte pieces and the learned pieces.
  Extra `options` go to `SentencePieceTrainer.train` unchanged (e.g. `hard_vocab_limit=False`
  for corpora too small to reach `vocab_size`, `input_sentence_size` to subsample big ones).
  """
  if model_type not in MODEL_TYPES:
    raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {model_type!r}")
  settings = dict(
      model_type=model_type,
      vocab_size=vocab_size,
      split_digits=True,
      byte_fallback=True,
      # Identity normalisation and kept whitespace: NFKC would silently rewrite target-language
      # text, and the exported tokenizer.json could then no longer match the model id for id.
      normalization_rule_name="identity",
      remove_extra_whitespaces=False,
      add_dummy_prefix=True,
      allow_whitespace_only_pieces=True,
      unk_id=0,
      bos_id=1,
      eos_id=2,
      pad_id=-1,
      character_coverage=character_coverage,
      num_threads=num_threads,
      max_sentence_length=max_sentence_length,
      minloglevel=2,
  )
  settings.update(options)
  writer = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=(t for t in texts if t), model_writer=writer, **settings
  )
  return writer.getvalue()
