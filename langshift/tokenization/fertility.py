"""Fertility report: how many tokens tokenizers spend on text, per language.

  python -m langshift.tokenization.fertility \
      --tokenizer smollm2=/tmp/smollm2 --tokenizer extended=/tmp/smollm2-ru \
      --text ru=/tmp/ru_test.txt --text en=/tmp/en_test.txt [--json report.json]

A tokenizer is a directory with tokenizer.json, a tokenizer.json or a SentencePiece .model; a
text file holds one document or paragraph per line. Chars/token is higher-is-better; tokens/word
(words = whitespace-separated) is the usual "fertility", lower-is-better. Specials are not counted.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from langshift.tokenization.tokenizer_files import to_tokenizer


def fertility(tokenizer, texts: Sequence[str]) -> dict[str, float]:
  tokenizer = to_tokenizer(tokenizer)
  encodings = tokenizer.encode_batch(list(texts), add_special_tokens=False)
  tokens = sum(len(e.ids) for e in encodings)
  chars = sum(len(t) for t in texts)
  words = sum(len(t.split()) for t in texts)
  return {
      "chars": chars,
      "words": words,
      "tokens": tokens,
      "chars_per_token": chars / max(tokens, 1),
      "tokens_per_word": tokens / max(words, 1),
  }


def fertility_report(tokenizers: dict, texts: dict[str, Sequence[str]]) -> dict:
  """{language: {tokenizer name: fertility}}."""
  loaded = {name: to_tokenizer(t) for name, t in tokenizers.items()}
  return {
      lang: {name: fertility(tok, docs) for name, tok in loaded.items()}
      for lang, docs in texts.items()
  }


def format_report(report: dict) -> str:
  lines = [
      f"{'language':<10}{'tokenizer':<24}{'tokens':>10}{'chars/token':>13}" f"{'tokens/word':>13}"
  ]
  for lang, by_tokenizer in report.items():
    for name, f in by_tokenizer.items():
      lines.append(
          f"{lang:<10}{name:<24}{f['tokens']:>10}{f['chars_per_token']:>13.3f}"
          f"{f['tokens_per_word']:>13.3f}"
      )
  return "\n".join(lines)


def _named(value: str) -> tuple[str, str]:
  name, sep, path = value.partition("=")
  if not sep:
    raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {value!r}")
  return name, path


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--tokenizer", type=_named, action="append", required=True)
  parser.add_argument("--text", type=_named, action="append", required=True)
  parser.add_argument("--json", help="also write the report here")
  args = parser.parse_args(argv)
  texts = {}
  for lang, path in args.text:
    with open(path, encoding="utf-8") as f:
      texts[lang] = [line.rstrip("\n") for line in f if line.strip()]
  report = fertility_report(dict(args.tokenizer), texts)
  print(format_report(report))
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(report, f, indent=2)


if __name__ == "__main__":
  main()
