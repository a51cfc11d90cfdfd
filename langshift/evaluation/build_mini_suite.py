r"""Builds the `handbook_mini` suite from the Debian Administrator's Handbook (offline).

The handbook (Debian package `debian-handbook`, GPL-2+ / CC-BY-SA-3.0) is paragraph-aligned across
its translations: the same `<div class="para">` count in every language. That gives real Russian,
Arabic and Chinese (Traditional and Simplified) text, aligned with English, for:

  copy_sentence_<lang>     generation, length ratio min(p/s, s/p)      (Darumeru sentence copy)
  copy_paragraph_<lang>    generation, LCS/len >= 0.99 rate             (Darumeru paragraph copy)
  translation_<lang>       choice: which of 4 paragraphs translates the English one
  continuation_<lang>      choice: which of 4 second halves continues the first half
  language_id              choice: the language a snippet is written in
  lang_alignment_<lang>    generation, share of answers in the prompt's language (InsCP)
  ppl_handbook             per-language perplexity on held-out paragraphs

Fetch and run (seconds):
  apt-get download debian-handbook && dpkg-deb -x debian-handbook_*.deb /tmp/dh
  python -m langshift.evaluation.build_mini_suite \
      --handbook_dir=/tmp/dh/usr/share/doc/debian-handbook/html \
      --out_dir=langshift/evaluation/suites/handbook_mini
"""

from __future__ import annotations

import glob
import html
import json
import os
import random
import re

from absl import app, flags

from langshift.text.language_id import detect_language

_HANDBOOK = flags.DEFINE_string("handbook_dir", None, "debian-handbook html/ folder.")
_OUT = flags.DEFINE_string("out_dir", None, "Where suite.json and the task JSONL files go.")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_PER_TASK = flags.DEFINE_integer("examples_per_task", 30, "Examples per task.")

LANGS = {"ru": "ru-RU", "ar": "ar-MA", "zh-Hant": "zh-TW", "zh-Hans": "zh-CN"}
LANG_NAMES = {
    "ru": "Russian",
    "ar": "Arabic",
    "zh-Hant": "Traditional Chinese",
    "zh-Hans": "Simplified Chinese",
    "en": "English",
}
# Task instructions in the task's own language: copy tasks are about reproducing that language.
COPY_INSTRUCTION = {
    "ru": "Перепишите следующий текст дословно, ничего не меняя.\nТекст: {text}\nКопия:",
    "ar": "انسخ النص التالي حرفيًا دون أي تغيير.\nالنص: {text}\nالنسخة:",
    "zh-Hant": "請逐字抄寫下面的文字，不要做任何修改。\n文字：{text}\n抄寫：",
    "zh-Hans": "请逐字抄写下面的文字，不要做任何修改。\n文字：{text}\n抄写：",
}
EXPLAIN_INSTRUCTION = {
    "ru": "Кратко объясните, о чём говорится в этом тексте:\n{text}",
    "ar": "اشرح باختصار موضوع هذا النص:\n{text}",
    "zh-Hant": "請簡要說明這段文字在講什麼：\n{text}",
    "zh-Hans": "请简要说明这段文字在讲什么：\n{text}",
    "en": "Briefly explain what this text is about:\n{text}",
}
LETTERS = ("A", "B", "C", "D", "E")
_TAG = re.compile(r"<[^>]+>")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？؟])\s*")


def clean(fragment: str) -> str:
  return " ".join(html.unescape(_TAG.sub("", fragment)).split())


def read_paragraphs(root: str, locale: str) -> dict[tuple[str, int], str]:
  out = {}
  for path in sorted(glob.glob(os.path.join(root, locale, "*.html"))):
    with open(path, encoding="utf-8") as f:
      raw = f.read()
    for i, frag in enumerate(re.findall(r'<div class="para">(.*?)</div>', raw, flags=re.S)):
      if "<div" not in frag and "<pre" not in frag:
        out[(os.path.basename(path), i)] = clean(frag)
  return out


def aligned(root: str) -> dict[str, dict[tuple[str, int], str]]:
  """Paragraphs per language keyed by (file, index); kept only where actually translated."""
  en = read_paragraphs(root, "en-US")
  result = {"en": {k: v for k, v in en.items() if detect_language(v) == "en"}}
  for lang, locale in LANGS.items():
    paras = read_paragraphs(root, locale)
    result[lang] = {
        k: v for k, v in paras.items() if k in en and v != en[k] and detect_language(v) == lang
    }
  return result


def first_sentence(text: str) -> str:
  return _SENTENCE_END.split(text, maxsplit=1)[0].strip()


def mcq(question: str, options, gold: int, lang: str, rid: str) -> dict:
  lines = [question] + [f"{LETTERS[i]}. {o}" for i, o in enumerate(options)]
  lines.append("Answer with the letter of the correct option.\nAnswer:")
  return {
      "id": rid,
      "prompt": "\n".join(lines),
      "choices": list(LETTERS[: len(options)]),
      "outputs": LETTERS[gold],
      "lang": lang,
  }


def build(root: str, per_task: int, seed: int) -> dict[str, list[dict]]:
  rng = random.Random(seed)
  paras = aligned(root)
  tasks: dict[str, list[dict]] = {}
  used: set = set()

  def take(lang, lo, hi, n, pred=lambda t: True):
    keys = [
        k
        for k, t in sorted(paras[lang].items())
        if lo <= len(t) <= hi and pred(t) and (lang, k) not in used
    ]
    picked = rng.sample(keys, min(n, len(keys)))
    used.update((lang, k) for k in picked)
    return picked

  for lang in LANGS:
    sentences = []
    for k, t in sorted(paras[lang].items()):
      s = first_sentence(t)
      if 30 <= len(s) <= 160 and detect_language(s) == lang:
        sentences.append((k, s))
    tasks[f"copy_sentence_{lang}"] = [
        {
            "id": f"{k[0]}#{k[1]}",
            "instruction": COPY_INSTRUCTION[lang],
            "inputs": {"text": s},
            "outputs": s,
            "lang": lang,
        }
        for k, s in rng.sample(sentences, per_task)
    ]
    tasks[f"copy_paragraph_{lang}"] = [
        {
            "id": f"{k[0]}#{k[1]}",
            "instruction": COPY_INSTRUCTION[lang],
            "inputs": {"text": paras[lang][k]},
            "outputs": paras[lang][k],
            "lang": lang,
        }
        for k in take(lang, 120, 260, per_task)
    ]

    pool = [k for k in paras[lang] if k in paras["en"] and 80 <= len(paras[lang][k]) <= 300]
    rows = []
    for k in take(lang, 80, 300, per_task, lambda t: True):
      if k not in paras["en"]:
        continue
      distractors = rng.sample([d for d in pool if d != k], 3)
      options = [paras[lang][d] for d in distractors]
      gold = rng.randrange(4)
      options.insert(gold, paras[lang][k])
      rows.append(
          mcq(
              f"Which option is the {LANG_NAMES[lang]} translation of this English "
              f"text?\nEnglish: {paras['en'][k]}",
              options,
              gold,
              lang,
              f"{k[0]}#{k[1]}",
          )
      )
    tasks[f"translation_{lang}"] = rows

    rows = []
    halves = []
    for k in take(lang, 120, 300, 4 * per_task):
      t = paras[lang][k]
      cut = len(t) // 2
      halves.append((k, t[:cut], t[cut:]))
    for j in range(min(per_task, len(halves))):
      k, head, tail = halves[j]
      distractors = rng.sample([h[2] for i, h in enumerate(halves) if i != j], 3)
      gold = rng.randrange(4)
      distractors.insert(gold, tail)
      rows.append(
          mcq(
              f"Which option continues this {LANG_NAMES[lang]} text?\nText: {head}…",
              ["…" + d for d in distractors],
              gold,
              lang,
              f"{k[0]}#{k[1]}",
          )
      )
    tasks[f"continuation_{lang}"] = rows

  langs_all = list(LANGS) + ["en"]
  rows = []
  for i in range(per_task):
    lang = langs_all[i % len(langs_all)]
    k = take(lang, 40, 160, 1)[0]
    rows.append(
        mcq(
            "In which language is this text written?\nText: " + paras[lang][k],
            [LANG_NAMES[code] for code in langs_all],
            langs_all.index(lang),
            lang,
            f"{k[0]}#{k[1]}",
        )
    )
  tasks["language_id"] = rows

  for lang in langs_all:
    tasks[f"lang_alignment_{lang}"] = [
        {
            "id": f"{k[0]}#{k[1]}",
            "instruction": EXPLAIN_INSTRUCTION[lang],
            "inputs": {"text": paras[lang][k]},
            "lang": lang,
        }
        for k in take(lang, 60, 200, per_task // 2)
    ]

  tasks["ppl_handbook"] = [
      {"id": f"{lang}:{k[0]}#{k[1]}", "text": paras[lang][k], "lang": lang}
      for lang in langs_all
      for k in take(lang, 100, 300, per_task // 4)
  ]
  return tasks


def suite_json(tasks: dict[str, list[dict]]) -> dict:
  specs = []
  for name in tasks:
    if name.startswith("copy_sentence"):
      spec = {
          "type": "generation",
          "metric": "length_ratio",
          "max_new_tokens": 160,
          "num_fewshot": 3,
          "stop": ["\n"],
      }
    elif name.startswith("copy_paragraph"):
      spec = {
          "type": "generation",
          "metric": "copy_rate",
          "max_new_tokens": 320,
          "num_fewshot": 2,
          "stop": ["\n"],
      }
    elif name.startswith("lang_alignment"):
      spec = {"type": "generation", "metric": "language_alignment", "max_new_tokens": 48}
    elif name.startswith("ppl"):
      spec = {"type": "perplexity", "metric": "ppl", "in_average": False}
    else:
      spec = {"type": "choice", "num_fewshot": 5 if name != "language_id" else 3}
    specs.append({"name": name, "path": f"{name}.jsonl", **spec})
  return {"name": "handbook_mini", "tasks": specs}


def main(argv):
  del argv
  tasks = build(_HANDBOOK.value, _PER_TASK.value, _SEED.value)
  os.makedirs(_OUT.value, exist_ok=True)
  for name, rows in tasks.items():
    with open(os.path.join(_OUT.value, f"{name}.jsonl"), "w", encoding="utf-8") as f:
      f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
  with open(os.path.join(_OUT.value, "suite.json"), "w", encoding="utf-8") as f:
    json.dump(suite_json(tasks), f, ensure_ascii=False, indent=1)
    f.write("\n")


if __name__ == "__main__":
  flags.mark_flags_as_required(["handbook_dir", "out_dir"])
  app.run(main)
