"""Real target-language text that installs offline: the Debian Administrator's Handbook.

Debian's `debian-handbook` package ships the book as HTML in 26 languages, paragraph-aligned
(`<div class="para">`, same count per page in every language). This turns one language into
JSONL corpora for continual pre-training and held-out perplexity, and aligned pages into
(English, target) pairs. `launch/setup_env.sh` fetches the package with `apt-get download`.

  python -m langshift.data.debian_handbook --root=.cache/debian-handbook --lang=ru-RU \
      --out=.cache/corpora/debian_handbook
"""

from __future__ import annotations

import glob
import html
import html.parser
import json
import os

from absl import app, flags

HTML_DIR = "usr/share/doc/debian-handbook/html"


class _ParaExtractor(html.parser.HTMLParser):
  """Collects the text of every <div class="para">, nested markup flattened."""

  def __init__(self):
    super().__init__(convert_charrefs=True)
    self.paragraphs: list[str] = []
    self._depth = 0  # div nesting depth inside the current paragraph
    self._buf: list[str] = []

  def handle_starttag(self, tag, attrs):
    if tag != "div":
      return
    if self._depth:
      self._depth += 1
    elif ("class", "para") in attrs:
      self._depth, self._buf = 1, []

  def handle_endtag(self, tag):
    if tag == "div" and self._depth:
      self._depth -= 1
      if not self._depth:
        text = " ".join("".join(self._buf).split())
        self.paragraphs.append(html.unescape(text))

  def handle_data(self, data):
    if self._depth:
      self._buf.append(data)


def page_paragraphs(path: str) -> list[str]:
  parser = _ParaExtractor()
  with open(path, encoding="utf-8") as f:
    parser.feed(f.read())
  return parser.paragraphs


def language_pages(root: str, lang: str) -> list[str]:
  directory = os.path.join(root, HTML_DIR, lang)
  pages = sorted(glob.glob(os.path.join(directory, "*.html")))
  if not pages:
    raise FileNotFoundError(
        f"{directory}: no HTML pages (is debian-handbook unpacked under "
        f"{root}? run launch/setup_env.sh)"
    )
  return pages


def write_corpus(
    root: str, lang: str, out_dir: str, heldout_every: int = 20, min_chars: int = 40
) -> dict[str, int]:
  """train.jsonl / heldout.jsonl of {"text": paragraph}; every Nth page is held out whole."""
  os.makedirs(out_dir, exist_ok=True)
  counts = {"train": 0, "heldout": 0}
  files = {k: open(os.path.join(out_dir, f"{k}.jsonl"), "w", encoding="utf-8") for k in counts}
  try:
    for i, page in enumerate(language_pages(root, lang)):
      split = "heldout" if i % heldout_every == heldout_every - 1 else "train"
      for para in page_paragraphs(page):
        if len(para) >= min_chars:
          files[split].write(json.dumps({"text": para}, ensure_ascii=False) + "\n")
          counts[split] += 1
  finally:
    for f in files.values():
      f.close()
  return counts


def aligned_pairs(root: str, lang: str, source_lang: str = "en-US") -> list[tuple[str, str]]:
  """(source, target) paragraph pairs from pages whose paragraph counts agree."""
  pairs = []
  for page in language_pages(root, lang):
    src_page = os.path.join(root, HTML_DIR, source_lang, os.path.basename(page))
    if not os.path.exists(src_page):
      continue
    tgt, src = page_paragraphs(page), page_paragraphs(src_page)
    if len(tgt) == len(src):
      pairs.extend((s, t) for s, t in zip(src, tgt) if s and t)
  return pairs


def _define_flags() -> None:
  """The CLI's flags, defined when it runs: tests import several of these modules into one
  process, and absl refuses a flag name defined twice."""
  flags.DEFINE_string("root", ".cache/debian-handbook", "Unpacked debian-handbook package.")
  flags.DEFINE_string("lang", "ru-RU", "Book language directory (ru-RU, ar-MA, zh-TW, ...).")
  flags.DEFINE_string("out", ".cache/corpora/debian_handbook", "Output root.")


def main(argv):
  del argv
  out = os.path.join(flags.FLAGS.out, flags.FLAGS.lang)
  counts = write_corpus(flags.FLAGS.root, flags.FLAGS.lang, out)
  print(f"{out}: {counts['train']} train / {counts['heldout']} held-out paragraphs")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
