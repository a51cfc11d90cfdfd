"""The four LEP tokenizer variants from a target-language corpus (Tikhomirov & Chernyshev 2024,
"Facilitating large language model Russian adaptation with Learned Embedding Propagation",
arXiv:2412.21140).

  bpe / unigram  a SentencePiece tokenizer trained from scratch (full replacement);
  extended       the base tokenizer + new BPE pieces (ids after the old ones);
  optimized      the base shrunk to `shrink_to` tokens + the top `max_new_tokens` new pieces.

  python -m langshift.tokenization.adaptation --variant extended --base /tmp/smollm2 \
      --corpus /tmp/ru_train.txt --vocab_size 16000 --out /tmp/smollm2-ru

`--base` is a tokenizer directory (byte-level BPE: Llama-3, Qwen2, SmolLM2) or a SentencePiece
BPE `.model` (Mistral); the output directory keeps the base's special tokens and chat template.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Sequence

from langshift.tokenization import extension, sentencepiece_export, shrinking
from langshift.tokenization.sentencepiece_training import train_sentencepiece
from langshift.tokenization.tokenizer_files import (
    SPECIAL_TOKEN_KEYS,
    read_tokenizer_config,
    read_tokenizer_json,
    special_token_content,
    write_tokenizer_dir,
)
from langshift.tokenization.vocabulary import tokenizer_kind

VARIANTS = ("bpe", "unigram", "extended", "optimized")


def build_tokenizer(
    variant: str,
    texts: Iterable[str],
    *,
    vocab_size: int,
    base: str | None = None,
    max_new_tokens: int | None = None,
    shrink_to: int | None = None,
    **train_options,
) -> dict:
  """tokenizer.json of the variant. `vocab_size` is the SentencePiece model trained on `texts`
  (the whole vocabulary for bpe/unigram, the pool of candidate pieces otherwise)."""
  if variant in ("bpe", "unigram"):
    model = train_sentencepiece(texts, model_type=variant, vocab_size=vocab_size, **train_options)
    return sentencepiece_export.sentencepiece_to_tokenizer_json(model)
  if variant not in VARIANTS:
    raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
  if base is None:
    raise ValueError(f"variant {variant!r} needs a base tokenizer")
  pieces = extension.sentencepiece_pieces(
      train_sentencepiece(texts, model_type="bpe", vocab_size=vocab_size, **train_options)
  )
  if base.endswith(".model"):
    if variant == "optimized":
      raise ValueError("the optimized variant shrinks a byte-level BPE (Llama-3) only")
    with open(base, "rb") as f:
      extended = extension.extend_sentencepiece_bpe(f.read(), pieces, max_new_tokens=max_new_tokens)
    return sentencepiece_export.sentencepiece_to_tokenizer_json(extended)
  spec = read_tokenizer_json(base)
  if tokenizer_kind(spec) != "byte_level":
    raise ValueError("extend a SentencePiece base through its .model file")
  if variant == "optimized":
    if shrink_to is None:
      raise ValueError("the optimized variant needs shrink_to")
    spec = shrinking.shrink_byte_level_bpe(spec, shrink_to)
  return extension.extend_byte_level_bpe(spec, pieces, max_new_tokens=max_new_tokens)


def _read_lines(paths: Sequence[str]) -> list[str]:
  lines = []
  for path in paths:
    with open(path, encoding="utf-8") as f:
      lines += [line.rstrip("\n") for line in f if line.strip()]
  return lines


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--variant", choices=VARIANTS, required=True)
  parser.add_argument(
      "--corpus",
      action="append",
      required=True,
      help="text file, one document or paragraph per line (repeatable)",
  )
  parser.add_argument("--vocab_size", type=int, required=True)
  parser.add_argument("--base")
  parser.add_argument("--max_new_tokens", type=int)
  parser.add_argument("--shrink_to", type=int)
  parser.add_argument("--out", required=True)
  args = parser.parse_args(argv)
  spec = build_tokenizer(
      args.variant,
      _read_lines(args.corpus),
      vocab_size=args.vocab_size,
      base=args.base,
      max_new_tokens=args.max_new_tokens,
      shrink_to=args.shrink_to,
  )
  config = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
  if args.base and os.path.isdir(args.base):
    base_config = read_tokenizer_config(args.base)
    config = {k: special_token_content(base_config.get(k)) for k in SPECIAL_TOKEN_KEYS}
    config["chat_template"] = base_config.get("chat_template")
  write_tokenizer_dir(args.out, spec, **config)
  print(f"{args.variant} tokenizer with {extension.next_free_id(spec)} ids -> {args.out}")


if __name__ == "__main__":
  main()
