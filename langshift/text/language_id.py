"""Offline language identification for the language-alignment metric (InsCP's response-language
rate), with Traditional and Simplified Chinese told apart.

CLD2 is the primary detector (fast, and the only offline one that labels zh-Hant); py3langid backs
it up when CLD2 is unsure. For Chinese the script decides: `hanzidentifier` looks at characters
that exist in only one of the two scripts. Labels are ISO 639-1 codes, except Chinese, which is
`zh-Hans` or `zh-Hant`.
"""

from __future__ import annotations

from collections.abc import Sequence

import hanzidentifier
import py3langid
import pycld2

UNKNOWN = "und"

# Region and script tags users put on prompts, folded onto the detector's labels.
_CHINESE_ALIASES = {
    "zh-tw": "zh-Hant",
    "zh-hk": "zh-Hant",
    "zh-mo": "zh-Hant",
    "zh-hant": "zh-Hant",
    "zh-cn": "zh-Hans",
    "zh-sg": "zh-Hans",
    "zh-hans": "zh-Hans",
    "zh": "zh-Hans",
}


def normalize_language_tag(tag: str) -> str:
  """'ru-RU' -> 'ru', 'zh-TW' -> 'zh-Hant', 'zh-CN' / 'zh' -> 'zh-Hans', 'ar_MA' -> 'ar'."""
  tag = tag.replace("_", "-").strip()
  low = tag.lower()
  if low in _CHINESE_ALIASES:
    return _CHINESE_ALIASES[low]
  if low.startswith("zh-"):
    return "zh-Hant" if "hant" in low else "zh-Hans"
  return low.split("-")[0]


def chinese_script(text: str) -> str | None:
  """'zh-Hant' / 'zh-Hans' when the characters decide it, else None."""
  kind = hanzidentifier.identify(text)
  if kind == hanzidentifier.TRADITIONAL:
    return "zh-Hant"
  if kind == hanzidentifier.SIMPLIFIED:
    return "zh-Hans"
  if kind == hanzidentifier.MIXED:  # both scripts' characters: go with the majority
    trad = sum(
        hanzidentifier.is_traditional(c) and not hanzidentifier.is_simplified(c) for c in text
    )
    simp = sum(
        hanzidentifier.is_simplified(c) and not hanzidentifier.is_traditional(c) for c in text
    )
    return "zh-Hant" if trad > simp else "zh-Hans" if simp > trad else None
  return None


def detect_language(text: str) -> str:
  text = text.strip()
  if not text:
    return UNKNOWN
  label = None
  try:
    reliable, _, details = pycld2.detect(text)
    code = details[0][1]
    if reliable and code not in ("un", "xx"):
      label = code
  except pycld2.error:  # invalid UTF-8 such as lone surrogates from a broken decode
    pass
  if label is None:
    label = py3langid.classify(text)[0]
  label = normalize_language_tag(label)
  if label.startswith("zh"):
    label = chinese_script(text) or label
  return label


def language_alignment(responses: Sequence[str], expected: Sequence[str]) -> float:
  """Share of responses whose detected language is the expected one (the prompt's)."""
  if not responses:
    return 0.0
  hits = sum(detect_language(r) == normalize_language_tag(e) for r, e in zip(responses, expected))
  return hits / len(responses)
