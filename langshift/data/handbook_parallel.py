"""An offline parallel instruction set from the Debian Administrator's Handbook.

The handbook ships translated HTML whose pages keep the same paragraphs in every language
(`langshift/data/debian_handbook.py`). That gives real parallel text in six of the twelve
languages of Shaham et al. 2024 (arXiv:2401.01854): en, ar, es, it, ru, zh. It is turned into
instruction/response pairs by one documented rule:

  For two consecutive paragraphs (p_k, p_k+1) of a page, both long enough, the instruction is a
  fixed request in the page's language — "Continue this passage from a system administration
  handbook:" followed by p_k — and the response is p_k+1. Example id: `<page>-<k>`.

An id is kept only where every language's page has the same paragraph count and both
paragraphs are detected (offline LID) in their language: the handbook leaves some paragraphs
untranslated, and an English "Arabic" example would corrupt a language study. Every
`heldout_every`-th page (whole pages, so no passage leaks) is the held-out split.

  python -m langshift.data.handbook_parallel --handbook=.cache/debian-handbook \
      --parallel_out=.cache/corpora/handbook_parallel
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from absl import app, flags

from langshift.data import debian_handbook, parallel_sets
from langshift.evaluation.language_id import detect_language

# Paper language code -> handbook folder.
HANDBOOK_LANGUAGES = {
    "en": "en-US",
    "ar": "ar-MA",
    "es": "es-ES",
    "it": "it-IT",
    "ru": "ru-RU",
    "zh": "zh-CN",
}
# The request in each language (the same meaning; written for this repository).
CONTINUE_REQUEST = {
    "en": "Continue this passage from a system administration handbook:",
    "ar": "أكمل هذا المقطع من دليل لإدارة الأنظمة:",
    "es": "Continúa este pasaje de un manual de administración de sistemas:",
    "it": "Continua questo passaggio di un manuale di amministrazione di sistema:",
    "ru": "Продолжите этот отрывок из руководства по системному администрированию:",
    "zh": "请续写这段系统管理手册中的文字：",
}
# What the LID says for each language's text (Simplified Chinese for the zh-CN book).
LID_LABEL = {"zh": "zh-Hans"}


def _in_language(text: str, lang: str) -> bool:
  return detect_language(text) == LID_LABEL.get(lang, lang)


def build_examples(
    root: str,
    languages: Sequence[str] = tuple(HANDBOOK_LANGUAGES),
    *,
    min_chars: int = 60,
    heldout_every: int = 5,
) -> dict[str, dict[str, list[dict]]]:
  """{"train": {lang: examples}, "heldout": {...}} with the same ids in every language."""
  unknown = [lang for lang in languages if lang not in HANDBOOK_LANGUAGES]
  if unknown:
    raise ValueError(
        f"languages {unknown} are not in the handbook; known: " f"{sorted(HANDBOOK_LANGUAGES)}"
    )
  pages = {
      lang: {
          os.path.basename(p): p
          for p in debian_handbook.language_pages(root, HANDBOOK_LANGUAGES[lang])
      }
      for lang in languages
  }
  shared = sorted(set.intersection(*(set(p) for p in pages.values())))
  splits: dict[str, dict[str, list[dict]]] = {
      s: {lang: [] for lang in languages} for s in parallel_sets.SPLITS
  }
  for n, page in enumerate(shared):
    paragraphs = {lang: debian_handbook.page_paragraphs(pages[lang][page]) for lang in languages}
    if len({len(p) for p in paragraphs.values()}) != 1:
      continue  # not aligned in every language
    split = "heldout" if n % heldout_every == heldout_every - 1 else "train"
    stem = os.path.splitext(page)[0]
    for k in range(len(paragraphs[languages[0]]) - 1):
      pair = {lang: (paragraphs[lang][k], paragraphs[lang][k + 1]) for lang in languages}
      if not all(
          len(a) >= min_chars
          and len(b) >= min_chars
          and _in_language(a, lang)
          and _in_language(b, lang)
          for lang, (a, b) in pair.items()
      ):
        continue
      for lang, (first, second) in pair.items():
        splits[split][lang].append(
            {
                "id": f"{stem}-{k:03d}",
                "lang": lang,
                "messages": parallel_sets.pair_messages(
                    f"{CONTINUE_REQUEST[lang]}\n\n{first}", second
                ),
            }
        )
  return splits


# Named apart from debian_handbook's --root/--out, which are defined on import.


def _define_flags() -> None:
  """The CLI's flags, defined when it runs: tests import several of these modules into one
  process, and absl refuses a flag name defined twice."""
  flags.DEFINE_string("handbook", ".cache/debian-handbook", "Unpacked debian-handbook.")
  flags.DEFINE_string("parallel_out", ".cache/corpora/handbook_parallel", "Output root.")
  flags.DEFINE_list("languages", list(HANDBOOK_LANGUAGES), "Paper language codes.")


def main(argv):
  del argv
  splits = build_examples(flags.FLAGS.handbook, flags.FLAGS.languages)
  manifest = parallel_sets.write_parallel_set(
      flags.FLAGS.parallel_out, splits, source="debian-handbook (consecutive aligned paragraphs)"
  )
  print(
      f"{flags.FLAGS.parallel_out}: {manifest['splits']} examples per language in "
      f"{manifest['languages']}"
  )


if __name__ == "__main__":
  _define_flags()
  app.run(main)
