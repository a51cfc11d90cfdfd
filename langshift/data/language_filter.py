"""Which handbook paragraphs are target-language prose: the one filter every handbook converter
applies (`debian_handbook`, `handbook_parallel`, `inscp_corpus`).

The Debian handbook's translations are partial: untranslated paragraphs stay in English (by CLD2,
51% of the ru-RU book's characters; most of the pl-PL and tr-TR books), and some paragraphs are a
shell command more than a sentence. A paragraph is kept only when it is long enough, at most half
of its characters sit in command or code markup, and langshift's offline language identification
(`langshift.text.language_id.detect_language`, the detector of the language-alignment
metric) gives it the target language's label. Deterministic: no sampling, no thresholds learned.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, NamedTuple

from langshift.text.language_id import detect_language, normalize_language_tag

KEPT = "kept"
SHORT = "short"
CODE = "code"
OTHER_LANGUAGE = "other_language"
# A paragraph with more of its characters in command/code markup than this is a command.
MAX_CODE_SHARE = 0.5


class Paragraph(NamedTuple):
  text: str
  code_chars: int = 0  # characters of `text` inside command or code markup (<pre>, screen, ...)


class Verdict(NamedTuple):
  reason: str  # KEPT, SHORT, CODE or OTHER_LANGUAGE
  language: str = ""  # the detected language, for OTHER_LANGUAGE


def target_label(lang: str) -> str:
  """The detector's label for a book folder: 'ru-RU' -> 'ru', 'zh-TW' -> 'zh-Hant'."""
  return normalize_language_tag(lang)


def judge(paragraph: Paragraph | str, label: str, *, min_chars: int) -> Verdict:
  """Why `paragraph` is kept or dropped for a corpus in `label` (a `target_label`).

  Cheap checks first: the detector runs only on long, non-command paragraphs.
  """
  if isinstance(paragraph, str):
    paragraph = Paragraph(paragraph)
  if len(paragraph.text) < min_chars:
    return Verdict(SHORT)
  if paragraph.code_chars > MAX_CODE_SHARE * len(paragraph.text):
    return Verdict(CODE)
  detected = detect_language(paragraph.text)
  if detected != label:
    return Verdict(OTHER_LANGUAGE, detected)
  return Verdict(KEPT)


@dataclasses.dataclass
class FilterCounts:
  """Paragraphs per verdict and the characters kept, as written to a corpus manifest."""

  kept: int = 0
  chars_kept: int = 0
  dropped_short: int = 0
  dropped_code: int = 0
  dropped_other_language: collections.Counter = dataclasses.field(
      default_factory=collections.Counter
  )

  def add(self, verdict: Verdict, text: str) -> None:
    if verdict.reason == KEPT:
      self.kept += 1
      self.chars_kept += len(text)
    elif verdict.reason == SHORT:
      self.dropped_short += 1
    elif verdict.reason == CODE:
      self.dropped_code += 1
    else:
      self.dropped_other_language[verdict.language] += 1

  def as_dict(self) -> dict[str, Any]:
    return {
        "kept": self.kept,
        "chars_kept": self.chars_kept,
        "dropped_short": self.dropped_short,
        "dropped_code": self.dropped_code,
        "dropped_other_language": dict(sorted(self.dropped_other_language.items())),
    }


def summary(counts: dict[str, Any]) -> str:
  """One line of a `FilterCounts.as_dict()` for a CLI: 'kept 1,201 (301,412 chars); dropped:
  other language 1,385 (en 1,380, bg 5), code 12, short 79'."""
  other = collections.Counter(counts["dropped_other_language"])
  langs = ", ".join(f"{k} {v:,}" for k, v in other.most_common(5))
  more = ", ..." if len(other) > 5 else ""
  return (
      f"kept {counts['kept']:,} ({counts['chars_kept']:,} chars); dropped: other language "
      f"{sum(other.values()):,}" + (f" ({langs}{more})" if other else "") + f", code "
      f"{counts['dropped_code']:,}, short {counts['dropped_short']:,}"
  )
