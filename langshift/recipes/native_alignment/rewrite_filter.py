"""Which (original, rewrite) pairs from an expert LLM to keep, and why the others are dropped.

In native alignment (Liang et al. 2024, "Alignment at Pre-training! Towards Native Alignment for
Arabic LLMs", arXiv:2412.03253) an aligned expert rewrites a seed sample of the corpus and a small
worker model is fine-tuned on the (original, rewrite) pairs, so every bad rewrite the expert makes
is a behaviour the worker learns and then applies to the whole corpus. The rules here catch the
usual failures of an instruction-tuned rewriter, each a small pure function; `drop_reason` applies
them in the fixed order of `RULES` and the first that fails is the pair's reason:

1. `empty`: the rewrite is blank (nothing else can be judged).
2. `meta_text`: the rewrite carries the chat model's own voice -- a preface ("Sure, here's the
   rewritten text:"), a refusal ("I'm sorry, I cannot ...", "عذرًا، لا أستطيع ..."), a header line
   ("Rewritten text:") or a code fence wrapping everything. It comes before the language and length
   rules because a refusal usually also fails those, and counting it as "language" would hide that
   the prompt, not the text, needs fixing.
3. `language`: the rewrite is in another language than expected (a translation, or a drift into
   English); before `length_ratio` because translating changes the character count too.
4. `length_ratio`: len(rewrite) / len(original) in characters (whitespace-stripped) lies outside
   [min_ratio, max_ratio]. The default band [0.5, 1.5] follows the polishing policy's "roughly the
   same length": removing ads and boilerplate legitimately shortens a web page, so the band is wide,
   but under half the length is almost always truncation or a summary, and over one and a half
   times is a continuation, commentary or hallucinated content.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import unicodedata
from collections.abc import Collection, Iterable, Mapping

from langshift.data.dedup import normalize_arabic
from langshift.text.language_id import UNKNOWN, detect_language, normalize_language_tag

RULES = ("empty", "meta_text", "language", "length_ratio")

# Labels that say the detector could not tell ("zxx": no linguistic content, e.g. bare code).
_UNDECIDED = frozenset({UNKNOWN, "zxx"})
# Below ~20 letters both detectors guess: 'Chapter One' -> sv, 'Санкт-Петербург' -> ky,
# 'Main menu' -> id. Such texts are not judged on language (the other rules still apply).
DEFAULT_MIN_LETTERS = 20


@dataclasses.dataclass(frozen=True)
class MetaTextPatterns:
  """Regular expressions (case-insensitive) for one language's meta-text.

  `openers` count only at the very start of the rewrite, `headers` only as a whole line (anywhere),
  with Markdown decoration (`#`, `**`, `>`, quotes) and a trailing colon allowed around both; a
  phrase in the body of the text never counts. Patterns are written in ordinary spelling: they are
  folded like the text (NFKC, `normalize_arabic`, typographic apostrophes), so 'عذرًا' also matches
  'عذرا' and 'إليك' matches 'اليك'.
  """

  openers: tuple[str, ...] = ()
  headers: tuple[str, ...] = ()


_EDIT_WORDS_EN = (
    r"(?:rewritten|re-written|revised|polished|edited|corrected|cleaned[- ]up|improved|"
    r"reformatted|updated|rewrite|revision)"
)

# Extensible: pass `meta_patterns={**META_TEXT_PATTERNS, "fa": MetaTextPatterns(...)}`. Every
# language's patterns are checked on every rewrite (an expert often answers an Arabic document
# with English chatter).
META_TEXT_PATTERNS: Mapping[str, MetaTextPatterns] = {
    "en": MetaTextPatterns(
        openers=(
            r"(?:sure|certainly|of course|absolutely)\s*[,!.:]",
            rf"here(?:'s| is| are)\s+(?:\S+\s+){{0,4}}?{_EDIT_WORDS_EN}\b",
            r"as an? (?:ai\b|artificial intelligence|(?:large )?language model)",
            r"i (?:cannot|can't|can not|am unable to|'m unable to|am not able to|won't)\b",
            r"i(?:'m| am) sorry\b",
            r"(?:sorry|my apologies),? (?:but )?i\b",
            rf"(?:the )?{_EDIT_WORDS_EN} (?:text|version|document|article)\s*:",
        ),
        headers=(
            rf"(?:the )?{_EDIT_WORDS_EN} (?:text|version|document|article)",
            rf"here(?:'s| is| are)\s+(?:\S+\s+){{0,4}}?{_EDIT_WORDS_EN}\b.*",
            r"(?:original|input) (?:text|document)",
            r"(?:notes?|changes(?: made)?)[\s*_]*:[\s*_]*i(?:'ve| have)?\s.*",
        ),
    ),
    "ar": MetaTextPatterns(
        openers=(
            r"(?:بالتأكيد|بكل تأكيد|بالطبع|حسنًا)\s*(?:[،,!.:]|إليك\b)",
            r"إليك\s+(?:النص|نص|النسخة|نسخة)\b",
            r"(?:لا أستطيع|لا يمكنني|لن أتمكن|لا أتمكن|يؤسفني)\b",
            r"(?:عذرًا|معذرة|أعتذر|آسف|آسفة)\b",
            r"(?:ك|بصفتي\s*)(?:نموذج|مساعد)\s+(?:ذكاء\s+اصطناعي|لغوي|لغة)",
            r"(?:النص|النسخة)\s+(?:المعاد\s+صياغته|المعدل|المنقح|المصحح)\s*:",
        ),
        headers=(
            r"(?:النص|النسخة)\s+(?:المعاد\s+صياغته|المعدل|المنقح|المصحح|بعد\s+\S+)",
            r"إليك\s+(?:النص|نص|النسخة|نسخة)\b.*",
            r"(?:النص\s+)?(?:الأصلي|الأصل)",
        ),
    ),
    "ru": MetaTextPatterns(
        openers=(
            r"(?:конечно|разумеется)\s*[,!.:]",
            r"вот\s+(?:\S+\s+){0,3}?(?:переписанн|исправленн|отредактированн|улучшенн)\w*",
            r"как (?:ии|ai|языковая модель|модель искусственного интеллекта)\b",
            r"(?:я не могу|к сожалению, я не могу|извините, (?:но )?я)\b",
        ),
        headers=(r"(?:переписанный|исправленный|отредактированный|улучшенный)\s+текст",),
    ),
    "zh": MetaTextPatterns(
        openers=(
            r"(?:好的|当然|當然|没问题|沒問題)\s*[,!.:]",
            r"以下是.{0,12}?(?:改写|改寫|润色|潤色|修改|修订|修訂|编辑|編輯)",
            r"(?:作为|作為)一?(?:个|個)?(?:ai|人工智能|语言模型|語言模型)",
            r"(?:很抱歉|抱歉|对不起|對不起)",
            r"我(?:无法|無法|不能)",
        ),
        headers=(r"(?:改写|改寫|润色|潤色|修改)(?:后|後)?的?(?:文本|文章|版本)",),
    ),
}

# Markdown or quoting around an opener or header: '## Rewritten text:', '**Note:**', '> Sure!'.
_DECORATION = r"[\s#*_>\"'`«»“”„]*"
_HEADER_TAIL = r"[\s*_:.!]*"
_FENCE = "```"
_TAG_WRAPPER = re.compile(r"<([a-z_]+)[^>]*>.*</\1>", re.IGNORECASE | re.DOTALL)


def _fold(text: str) -> str:
  """What meta-text matching sees: NFKC (full-width '，' -> ','), Arabic spelling folded, ’ -> '."""
  text = unicodedata.normalize("NFKC", text).replace("\u2019", "'").replace("\u2018", "'")
  return normalize_arabic(text)


@functools.lru_cache(maxsize=64)
def _compiled(patterns: MetaTextPatterns) -> tuple[tuple[str, re.Pattern, re.Pattern], ...]:
  """(label, opener regex, header regex) per pattern; the header form must match a whole line."""
  out = []
  for source in patterns.openers:
    regex = re.compile(_DECORATION + "(?:" + _fold(source) + ")", re.IGNORECASE)
    out.append(("opener:" + source, regex, None))
  for source in patterns.headers:
    regex = re.compile(
        _DECORATION + "(?:" + _fold(source) + ")" + _HEADER_TAIL + _DECORATION, re.IGNORECASE
    )
    out.append(("header:" + source, None, regex))
  return tuple(out)


def is_wrapped(text: str) -> bool:
  """True when one code fence (```...```) or one tag pair (<doc>...</doc>) encloses all the text."""
  text = text.strip()
  # Exactly two fences: '```py ... ``` text ``` ... ```' is two code blocks, not a wrapper.
  if text.startswith(_FENCE) and text.endswith(_FENCE) and text.count(_FENCE) == 2:
    return True
  match = _TAG_WRAPPER.fullmatch(text)
  # One opening tag: '<p>..</p><p>..</p>' is HTML paragraphs, not a wrapper.
  return match is not None and text.lower().count("<" + match.group(1).lower()) == 1


def meta_text_found(
    text: str, patterns: Mapping[str, MetaTextPatterns] = META_TEXT_PATTERNS
) -> frozenset[str]:
  """Labels of the meta-text patterns `text` matches ('en:opener:...', 'ar:header:...',
  'wrapper'); empty when there is none."""
  folded = _fold(text)
  lines = folded.splitlines()
  found = {"wrapper"} if is_wrapped(folded) else set()
  for language, language_patterns in patterns.items():
    for label, opener, header in _compiled(language_patterns):
      if opener is not None and opener.match(folded):
        found.add(f"{language}:{label}")
      elif header is not None and any(header.fullmatch(line) for line in lines):
        found.add(f"{language}:{label}")
  return frozenset(found)


def is_blank(text: str) -> bool:
  return not text.strip()


def has_meta_text(
    original: str, rewrite: str, patterns: Mapping[str, MetaTextPatterns] = META_TEXT_PATTERNS
) -> bool:
  """Meta-text in the rewrite that the original does not already have.

  The comparison keeps documents that legitimately open like a chat reply ('I cannot recommend
  this hotel enough...', a letter starting 'عذرًا', a README that is one code block) when the
  rewrite keeps that opening.
  """
  return bool(meta_text_found(rewrite, patterns) - meta_text_found(original, patterns))


def letter_count(text: str) -> int:
  return sum(c.isalpha() for c in text)


def language_mismatch(
    original: str,
    rewrite: str,
    *,
    language: str | None,
    min_letters: int = DEFAULT_MIN_LETTERS,
) -> bool:
  """True when the rewrite's detected language differs from `language` (or, if None, from the
  original's detected language).

  Undecided cases keep the pair: a rewrite (or, with `language=None`, an original) with fewer than
  `min_letters` letters, and a detector answer of 'und' (e.g. only digits and punctuation). Short
  texts are where LID guesses, and a wrong guess would drop a good pair; a short rewrite of a long
  original still fails `length_ratio`.
  """
  if letter_count(rewrite) < min_letters:
    return False
  if language is None:
    if letter_count(original) < min_letters:
      return False
    expected = detect_language(original)
  else:
    expected = normalize_language_tag(language)
  if expected in _UNDECIDED:
    return False
  detected = detect_language(rewrite)
  return detected not in _UNDECIDED and detected != expected


def length_ratio(original: str, rewrite: str) -> float:
  """Characters of the rewrite per character of the original (whitespace-stripped); inf for a
  blank original with a non-blank rewrite, 1.0 when both are blank."""
  original_chars, rewrite_chars = len(original.strip()), len(rewrite.strip())
  if original_chars == 0:
    return 1.0 if rewrite_chars == 0 else math.inf
  return rewrite_chars / original_chars


def length_ratio_out_of_band(
    original: str, rewrite: str, *, min_ratio: float, max_ratio: float
) -> bool:
  return not min_ratio <= length_ratio(original, rewrite) <= max_ratio


def _check_settings(
    min_ratio: float, max_ratio: float, min_letters: int, rules: Collection[str]
) -> None:
  if not (math.isfinite(min_ratio) and min_ratio >= 0):
    raise ValueError(f"min_ratio must be a finite number >= 0, got {min_ratio!r}")
  if not (math.isfinite(max_ratio) and max_ratio >= min_ratio):
    raise ValueError(f"max_ratio must be finite and >= min_ratio={min_ratio}, got {max_ratio!r}")
  if isinstance(min_letters, bool) or not isinstance(min_letters, int) or min_letters < 0:
    raise ValueError(f"min_letters must be a non-negative integer, got {min_letters!r}")
  if isinstance(rules, str):
    raise ValueError(f"rules must be a collection of rule names, got the string {rules!r}")
  unknown = sorted(set(rules) - set(RULES))
  if unknown:
    raise ValueError(f"rules: unknown {unknown}; known rules are {list(RULES)}")


def drop_reason(
    original: str,
    rewrite: str,
    *,
    language: str | None,
    min_ratio: float = 0.5,
    max_ratio: float = 1.5,
    min_letters: int = DEFAULT_MIN_LETTERS,
    rules: Collection[str] = RULES,
    meta_patterns: Mapping[str, MetaTextPatterns] = META_TEXT_PATTERNS,
) -> str | None:
  """The first rule of `RULES` (among `rules`) that the pair fails, or None to keep it.

  Settings are not validated here (`filter_rewrites` does it once for a whole batch).
  """
  checks = {
      "empty": lambda: is_blank(rewrite),
      "meta_text": lambda: has_meta_text(original, rewrite, meta_patterns),
      "language": lambda: language_mismatch(
          original, rewrite, language=language, min_letters=min_letters
      ),
      "length_ratio": lambda: length_ratio_out_of_band(
          original, rewrite, min_ratio=min_ratio, max_ratio=max_ratio
      ),
  }
  for rule in RULES:
    if rule in rules and checks[rule]():
      return rule
  return None


@dataclasses.dataclass(frozen=True)
class FilterResult:
  """`kept`: ascending indices of the kept pairs; `dropped`: index -> reason (a rule name).
  `counts` has `kept` and `dropped_<rule>` for every rule of `RULES`, zero when unused."""

  kept: tuple[int, ...]
  dropped: Mapping[int, str]

  @property
  def counts(self) -> dict[str, int]:
    reasons = list(self.dropped.values())
    return {"kept": len(self.kept)} | {f"dropped_{r}": reasons.count(r) for r in RULES}


def filter_rewrites(
    pairs: Iterable[tuple[str, str]],
    *,
    language: str | None,
    min_ratio: float = 0.5,
    max_ratio: float = 1.5,
    min_letters: int = DEFAULT_MIN_LETTERS,
    rules: Collection[str] = RULES,
    meta_patterns: Mapping[str, MetaTextPatterns] = META_TEXT_PATTERNS,
) -> FilterResult:
  """Keeps the (original, rewrite) pairs that pass every rule in `rules`.

  Args:
    pairs: (original, rewrite) texts.
    language: the language the rewrites must be in ('ar', 'zh-TW', ...; tags are normalised as in
      `langshift.text.language_id`), or None for "the same as the original's".
    min_ratio, max_ratio: band of rewrite/original length in characters (see the module doc).
    min_letters: texts with fewer letters are not judged on language.
    rules: the rules to apply (any subset of `RULES`); they always run in `RULES` order.
    meta_patterns: meta-text patterns per language (default `META_TEXT_PATTERNS`).
  """
  _check_settings(min_ratio, max_ratio, min_letters, rules)
  kept, dropped = [], {}
  for index, (original, rewrite) in enumerate(pairs):
    reason = drop_reason(
        original,
        rewrite,
        language=language,
        min_ratio=min_ratio,
        max_ratio=max_ratio,
        min_letters=min_letters,
        rules=rules,
        meta_patterns=meta_patterns,
    )
    if reason is None:
      kept.append(index)
    else:
      dropped[index] = reason
  return FilterResult(tuple(kept), dropped)
