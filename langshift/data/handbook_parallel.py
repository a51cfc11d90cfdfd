"""An offline parallel instruction set from the Debian Administrator's Handbook.

The handbook ships translated HTML whose pages keep the same paragraphs in every language
(`langshift/data/debian_handbook.py`). That gives real parallel text in six of the twelve
languages of Shaham et al. 2024 (arXiv:2401.01854): en, ar, es, it, ru, zh. It is turned into
instruction/response pairs by one documented rule:

  For two consecutive paragraphs (p_k, p_k+1) of a page, both long enough, the instruction is a
  fixed request in the page's language — "Continue this passage from a system administration
  handbook:" followed by p_k — and the response is p_k+1. Example id: `<page>-<k>`.

An id is kept only where every language's page has the same paragraph count and both
paragraphs pass `langshift.data.language_filter` in every language (long enough, not a command,
detected in their language by the offline LID): the handbook leaves some paragraphs untranslated,
and an "aligned pair" whose Arabic side is still English is not a translation; it would corrupt a
language study. The manifest counts the ids dropped per reason. Every `heldout_every`-th page
(whole pages, so no passage leaks) is the held-out split.

  python -m langshift.data.handbook_parallel --handbook=.cache/debian-handbook \
      --parallel_out=.cache/corpora/handbook_parallel
"""

from __future__ import annotations

import collections
import os
from collections.abc import Sequence
from typing import Any

from absl import app, flags

from langshift.data import corpus_manifest, debian_handbook, language_filter, parallel_sets

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


def build_examples(
    root: str,
    languages: Sequence[str] = tuple(HANDBOOK_LANGUAGES),
    *,
    min_chars: int = 60,
    heldout_every: int = 5,
) -> tuple[dict[str, dict[str, list[dict]]], dict[str, Any]]:
  """({"train": {lang: examples}, "heldout": {...}} with the same ids in every language, counts).

  The counts: pages aligned or not, candidate ids (consecutive paragraph pairs of aligned pages),
  kept, and dropped per reason: the first failing paragraph, languages in order, decides (short,
  code, or other_language as {language: {detected: ids}}).
  """
  unknown = [lang for lang in languages if lang not in HANDBOOK_LANGUAGES]
  if unknown:
    raise ValueError(
        f"languages {unknown} are not in the handbook; known: " f"{sorted(HANDBOOK_LANGUAGES)}"
    )
  labels = {lang: language_filter.target_label(HANDBOOK_LANGUAGES[lang]) for lang in languages}
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
  counts = collections.Counter()
  other = {lang: collections.Counter() for lang in languages}
  for n, page in enumerate(shared):
    paragraphs = {lang: debian_handbook.read_page(pages[lang][page])[0] for lang in languages}
    if len({len(p) for p in paragraphs.values()}) != 1:
      counts["unaligned_pages"] += 1
      continue  # not aligned in every language
    counts["aligned_pages"] += 1
    verdicts = {
        lang: [language_filter.judge(p, labels[lang], min_chars=min_chars) for p in paras]
        for lang, paras in paragraphs.items()
    }
    split = "heldout" if n % heldout_every == heldout_every - 1 else "train"
    stem = os.path.splitext(page)[0]
    for k in range(len(paragraphs[languages[0]]) - 1):
      counts["candidates"] += 1
      failed = next(
          (
              (lang, v)
              for lang in languages
              for v in verdicts[lang][k : k + 2]
              if v.reason != language_filter.KEPT
          ),
          None,
      )
      if failed is not None:
        lang, verdict = failed
        if verdict.reason == language_filter.OTHER_LANGUAGE:
          other[lang][verdict.language] += 1
        else:
          counts[f"dropped_{verdict.reason}"] += 1
        continue
      counts["kept"] += 1
      for lang in languages:
        first, second = paragraphs[lang][k].text, paragraphs[lang][k + 1].text
        splits[split][lang].append(
            {
                "id": f"{stem}-{k:03d}",
                "lang": lang,
                "messages": parallel_sets.pair_messages(
                    f"{CONTINUE_REQUEST[lang]}\n\n{first}", second
                ),
            }
        )
  stats = {
      k: counts[k]
      for k in ("aligned_pages", "unaligned_pages", "candidates", "kept")
      + ("dropped_short", "dropped_code")
  }
  stats["dropped_other_language"] = {
      lang: dict(sorted(c.items())) for lang, c in other.items() if c
  }
  return splits, stats


# Named apart from debian_handbook's --root/--out, which are defined on import.


def _define_flags() -> None:
  """The CLI's flags, defined when it runs: tests import several of these modules into one
  process, and absl refuses a flag name defined twice."""
  flags.DEFINE_string("handbook", ".cache/debian-handbook", "Unpacked debian-handbook.")
  flags.DEFINE_string("parallel_out", ".cache/corpora/handbook_parallel", "Output root.")
  flags.DEFINE_list("languages", list(HANDBOOK_LANGUAGES), "Paper language codes.")


def main(argv):
  del argv
  splits, stats = build_examples(flags.FLAGS.handbook, flags.FLAGS.languages)
  manifest = parallel_sets.write_parallel_set(
      flags.FLAGS.parallel_out,
      splits,
      source="debian-handbook (consecutive aligned paragraphs)",
      extra={"converter_version": corpus_manifest.CONVERTER_VERSION, "filter": stats},
  )
  other = {lang: sum(c.values()) for lang, c in stats["dropped_other_language"].items()}
  print(
      f"{flags.FLAGS.parallel_out}: {manifest['splits']} examples per language in "
      f"{manifest['languages']}; of {stats['candidates']:,} aligned pairs dropped: a side in "
      f"another language {sum(other.values()):,} (first failing side {other}), code "
      f"{stats['dropped_code']:,}, short {stats['dropped_short']:,}"
  )


if __name__ == "__main__":
  _define_flags()
  app.run(main)
