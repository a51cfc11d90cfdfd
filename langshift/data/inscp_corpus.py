"""Offline InsCP data from the Debian handbook: Traditional Chinese text to continue pre-training
on, held-out text, and a language-alignment prompt set in Traditional Chinese and English.

InsCP (Chen & Lee 2024, "InstructionCP: A fast approach to transfer Large Language Models into
target language", arXiv:2405.20175, Sec. 4.2) measures the share of responses in the prompt's
language on 2,000 TED sentences. The offline stand-in: the first sentence of held-out handbook
paragraphs, zh-TW pages for the Traditional Chinese prompts and the same pages in en-US for the
English ones (the held-out pages are never trained on); the rest of the paragraph is the
`reference` answer (the reference-NLL metric of `langshift/evaluation/response_eval.py`).

The zh-TW book is only partly translated (many paragraphs are still English), so every paragraph
goes through `langshift.data.language_filter`, the filter of the other handbook corpora: kept only
when offline LID labels it `zh-Hant` and it is not a command; an English prompt only when its
aligned en-US paragraph passes the same filter for English.

  python -m langshift.data.inscp_corpus --handbook=.cache/debian-handbook \\
      --inscp_out=.cache/corpora/inscp/zh-TW
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from absl import app, flags

from langshift.data import corpus_manifest, debian_handbook, language_filter

HELDOUT_EVERY = 20  # every 20th page held out, as `debian_handbook.write_corpus` does
MIN_CHARS = 40
# A sentence ends at 。！？ (CJK) or at . ! ? followed by a space.
_SENTENCE_END = re.compile(r"(?<=[。！？])|(?<=[.!?])\s+")


def first_sentence(text: str, max_chars: int = 200) -> tuple[str, str]:
  """(first sentence, the rest) of a paragraph; the sentence is at most `max_chars`."""
  parts = [p for p in _SENTENCE_END.split(text, maxsplit=1) if p is not None]
  head = parts[0].strip()[:max_chars]
  rest = text[len(parts[0]) :].strip() if len(parts) > 1 else ""
  return head, rest


def write_inscp_corpus(
    handbook: str, out_dir: str, *, lang: str = "zh-TW", english: str = "en-US"
) -> dict[str, Any]:
  """train.jsonl / heldout.jsonl of {"text"} (target-language paragraphs only), prompts.jsonl of
  {"prompt", "language", "reference"} and manifest.json; returns the counts: paragraphs and
  prompts written, and the paragraphs dropped per reason (`filter`)."""
  label = language_filter.target_label(lang)
  english_label = language_filter.target_label(english)
  os.makedirs(out_dir, exist_ok=True)
  stats = language_filter.FilterCounts()
  counts = dict(train=0, heldout=0, prompts_target=0, prompts_english=0)
  files = {
      k: open(os.path.join(out_dir, f"{k}.jsonl"), "w", encoding="utf-8")
      for k in ("train", "heldout")
  }
  prompts = []
  try:
    for i, page in enumerate(debian_handbook.language_pages(handbook, lang)):
      split = "heldout" if i % HELDOUT_EVERY == HELDOUT_EVERY - 1 else "train"
      paragraphs = debian_handbook.read_page(page)[0]
      src_page = os.path.join(handbook, debian_handbook.HTML_DIR, english, os.path.basename(page))
      english_paras = debian_handbook.read_page(src_page)[0] if os.path.exists(src_page) else []
      aligned = len(english_paras) == len(paragraphs)
      for j, para in enumerate(paragraphs):
        verdict = language_filter.judge(para, label, min_chars=MIN_CHARS)
        stats.add(verdict, para.text)
        if verdict.reason != language_filter.KEPT:
          continue
        files[split].write(json.dumps({"text": para.text}, ensure_ascii=False) + "\n")
        counts[split] += 1
        if split == "heldout":
          prompts.append(_prompt(para.text, lang))
          counts["prompts_target"] += 1
          if aligned and _passes(english_paras[j], english_label):
            prompts.append(_prompt(english_paras[j].text, "en"))
            counts["prompts_english"] += 1
  finally:
    for f in files.values():
      f.close()
  with open(os.path.join(out_dir, "prompts.jsonl"), "w", encoding="utf-8") as f:
    f.writelines(json.dumps(p, ensure_ascii=False) + "\n" for p in prompts)
  counts["filter"] = stats.as_dict()
  corpus_manifest.write_manifest(
      out_dir, {"source": f"debian-handbook {lang} (InsCP)", "language": label, **counts}
  )
  return counts


def _passes(paragraph: language_filter.Paragraph, label: str) -> bool:
  return language_filter.judge(paragraph, label, min_chars=1).reason == language_filter.KEPT


def _prompt(paragraph: str, language: str) -> dict:
  sentence, rest = first_sentence(paragraph)
  record = {"prompt": sentence, "language": language}
  if rest:
    record["reference"] = rest
  return record


# Flag names distinct from `debian_handbook`'s (imported here, it defines --root/--lang/--out).


def _define_flags() -> None:
  """The CLI's flags, defined when it runs: tests import several of these modules into one
  process, and absl refuses a flag name defined twice."""
  flags.DEFINE_string("handbook", ".cache/debian-handbook", "Unpacked debian-handbook.")
  flags.DEFINE_string("target_lang", "zh-TW", "Target language directory of the book.")
  flags.DEFINE_string("inscp_out", ".cache/corpora/inscp/zh-TW", "Output folder.")


def main(argv):
  del argv
  counts = write_inscp_corpus(
      flags.FLAGS.handbook, flags.FLAGS.inscp_out, lang=flags.FLAGS.target_lang
  )
  print(
      f"{flags.FLAGS.inscp_out}: {counts['train']:,} train / {counts['heldout']:,} held-out "
      f"paragraphs, {counts['prompts_target']} + {counts['prompts_english']} prompts; "
      + language_filter.summary(counts["filter"])
  )


if __name__ == "__main__":
  _define_flags()
  app.run(main)
