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
from typing import Any

from absl import app, flags

from langshift.data import corpus_manifest, language_filter

HTML_DIR = "usr/share/doc/debian-handbook/html"


# Markup of what is typed at or printed by a terminal, or a program's text (DocBook classes, and
# <pre>): a paragraph mostly inside it is a command, not prose; a <pre> outside a paragraph is a
# code block (`screen`, `programlisting`), never taken as text.
CODE_CLASSES = frozenset({"screen", "programlisting", "command", "userinput", "computeroutput"})


class _ParaExtractor(html.parser.HTMLParser):
  """Collects every <div class="para"> (nested markup flattened, with the characters inside code
  markup counted) and counts the <pre> code blocks outside them."""

  def __init__(self):
    super().__init__(convert_charrefs=True)
    self.paragraphs: list[language_filter.Paragraph] = []
    self.code_blocks = 0
    self._depth = 0  # div nesting depth inside the current paragraph
    self._open: list[tuple[str, bool]] = []  # (tag, is code markup) open inside the paragraph
    self._buf: list[tuple[str, bool]] = []  # (text, inside code markup)

  def handle_starttag(self, tag, attrs):
    if not self._depth:
      if tag == "div" and ("class", "para") in attrs:
        self._depth, self._open, self._buf = 1, [], []
      elif tag == "pre":
        self.code_blocks += 1
      return
    if tag == "div":
      self._depth += 1
    classes = set((dict(attrs).get("class") or "").split())
    self._open.append((tag, tag == "pre" or bool(classes & CODE_CLASSES)))

  def handle_endtag(self, tag):
    if not self._depth:
      return
    if tag == "div":
      self._depth -= 1
      if not self._depth:
        self._end_paragraph()
        return
    for i in range(len(self._open) - 1, -1, -1):  # close up to the matching tag (lenient HTML)
      if self._open[i][0] == tag:
        del self._open[i:]
        break

  def handle_data(self, data):
    if self._depth:
      self._buf.append((data, any(code for _, code in self._open)))

  def _end_paragraph(self):
    text = html.unescape(" ".join("".join(t for t, _ in self._buf).split()))
    code = html.unescape(" ".join("".join(t for t, c in self._buf if c).split()))
    self.paragraphs.append(language_filter.Paragraph(text, len(code)))


def read_page(path: str) -> tuple[list[language_filter.Paragraph], int]:
  """(paragraphs, number of <pre> code blocks outside them) of one HTML page."""
  parser = _ParaExtractor()
  with open(path, encoding="utf-8") as f:
    parser.feed(f.read())
  parser.close()
  return parser.paragraphs, parser.code_blocks


def page_paragraphs(path: str) -> list[str]:
  """Every paragraph's text, unfiltered: pages align across languages paragraph by paragraph."""
  return [p.text for p in read_page(path)[0]]


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
) -> dict[str, Any]:
  """train.jsonl / heldout.jsonl of {"text": paragraph} and manifest.json; every Nth page is held
  out whole. Only paragraphs in `lang` are kept (`language_filter.judge`: untranslated English
  paragraphs, commands and short lines are dropped). Returns the manifest: paragraphs per split,
  and per split the counts per reason."""
  label = language_filter.target_label(lang)
  pages = language_pages(root, lang)
  os.makedirs(out_dir, exist_ok=True)
  stats = {k: language_filter.FilterCounts() for k in ("train", "heldout")}
  code_blocks = 0
  files = {k: open(os.path.join(out_dir, f"{k}.jsonl"), "w", encoding="utf-8") for k in stats}
  try:
    for i, page in enumerate(pages):
      split = "heldout" if i % heldout_every == heldout_every - 1 else "train"
      paragraphs, blocks = read_page(page)
      code_blocks += blocks
      for para in paragraphs:
        verdict = language_filter.judge(para, label, min_chars=min_chars)
        stats[split].add(verdict, para.text)
        if verdict.reason == language_filter.KEPT:
          files[split].write(json.dumps({"text": para.text}, ensure_ascii=False) + "\n")
  finally:
    for f in files.values():
      f.close()
  return corpus_manifest.write_manifest(
      out_dir,
      {
          "source": f"debian-handbook {lang}",
          "language": label,
          "min_chars": min_chars,
          "heldout_every": heldout_every,
          "train": stats["train"].kept,
          "heldout": stats["heldout"].kept,
          "code_blocks_skipped": code_blocks,
          "filter": {k: v.as_dict() for k, v in stats.items()},
      },
  )


def aligned_pairs(root: str, lang: str, source_lang: str = "en-US") -> list[tuple[str, str]]:
  """(source, target) paragraph pairs from pages whose paragraph counts agree, each side in its
  language and not a command (`language_filter`): an untranslated target is not a translation."""
  labels = language_filter.target_label(source_lang), language_filter.target_label(lang)
  pairs = []
  for page in language_pages(root, lang):
    src_page = os.path.join(root, HTML_DIR, source_lang, os.path.basename(page))
    if not os.path.exists(src_page):
      continue
    tgt, src = read_page(page)[0], read_page(src_page)[0]
    if len(tgt) == len(src):
      pairs.extend(
          (s.text, t.text)
          for s, t in zip(src, tgt)
          if language_filter.judge(s, labels[0], min_chars=1).reason == language_filter.KEPT
          and language_filter.judge(t, labels[1], min_chars=1).reason == language_filter.KEPT
      )
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
  manifest = write_corpus(flags.FLAGS.root, flags.FLAGS.lang, out)
  for split in ("train", "heldout"):
    print(f"{out}/{split}.jsonl: {language_filter.summary(manifest['filter'][split])}")
  if manifest["code_blocks_skipped"]:
    print(f"{out}: {manifest['code_blocks_skipped']:,} code blocks (<pre>) skipped")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
