"""Filtering of expert rewrites (`langshift.recipes.native_alignment.rewrite_filter`)."""

import math

import pytest

from langshift.recipes.native_alignment import rewrite_filter as rf

EN_ORIGINAL = (
    "The Nile is the longest river in Africa. It flows north through eleven countries before "
    "reaching the Mediterranean Sea near Alexandria. CLICK HERE to subscribe to our newsletter!!!"
)
EN_REWRITE = (
    "The Nile is the longest river in Africa. It flows north through eleven countries before "
    "reaching the Mediterranean Sea near Alexandria."
)
AR_ORIGINAL = (
    "نهر النيل هو أطول نهر في أفريقيا، ويجري شمالا عبر إحدى عشرة دولة قبل أن يصب في البحر "
    "الأبيض المتوسط قرب الإسكندرية. اشترك الآن في نشرتنا البريدية واحصل على خصم ٥٠٪!!!"
)
AR_REWRITE = (
    "نهر النيل هو أطول نهر في أفريقيا، ويجري شمالًا عبر إحدى عشرة دولة قبل أن يصب في البحر "
    "الأبيض المتوسط قرب الإسكندرية."
)
# The Arabic original translated into English by the expert: the language rule's case.
AR_TRANSLATED = EN_REWRITE


def reason(original, rewrite, language="ar", **kwargs):
  return rf.drop_reason(original, rewrite, language=language, **kwargs)


def test_good_pairs_pass_every_rule():
  assert reason(AR_ORIGINAL, AR_REWRITE) is None
  assert reason(EN_ORIGINAL, EN_REWRITE, language="en") is None
  assert reason(AR_ORIGINAL, AR_REWRITE, language=None) is None
  assert reason(AR_ORIGINAL, AR_ORIGINAL, language="ar-EG") is None  # clean text left unchanged


@pytest.mark.parametrize("rewrite", ["", "   ", "\n\t\n"])
def test_empty(rewrite):
  assert rf.is_blank(rewrite)
  assert reason(AR_ORIGINAL, rewrite) == "empty"


@pytest.mark.parametrize(
    "rewrite",
    [
        "Sure, here's the rewritten text:\n\n" + EN_REWRITE,
        "Certainly! Here is a polished version of the document.\n\n" + EN_REWRITE,
        "Here is the revised text:\n" + EN_REWRITE,
        "Rewritten text: " + EN_REWRITE,
        "**Rewritten text:**\n\n" + EN_REWRITE,
        "## Revised Document\n\n" + EN_REWRITE,
        EN_REWRITE + "\n\nNote: I have removed the advertisement at the end.",
        EN_REWRITE + "\n\n**Note:** I removed the newsletter link.",
        "As an AI language model, I have cleaned up the text.\n\n" + EN_REWRITE,
        "I'm sorry, but I can't rewrite this document because it contains advertising.",
        "I cannot help with rewriting this content.",
        "```markdown\n" + EN_REWRITE + "\n```",
        "<document>\n" + EN_REWRITE + "\n</document>",
    ],
)
def test_english_meta_text(rewrite):
  assert rf.has_meta_text(EN_ORIGINAL, rewrite)
  assert reason(EN_ORIGINAL, rewrite, language="en") == "meta_text"


@pytest.mark.parametrize(
    "rewrite",
    [
        "إليك النص المعاد صياغته:\n\n" + AR_REWRITE,
        "بالتأكيد! إليك النص بعد التنقيح:\n" + AR_REWRITE,
        "بالتأكيد، " + AR_REWRITE,
        "**النص المعاد صياغته:**\n" + AR_REWRITE,
        AR_REWRITE + "\n\nالنص المعدل\n",
        "عذرًا، لا أستطيع إعادة صياغة هذا النص لأنه يحتوي على إعلانات.",
        "عذرا، لا أستطيع المساعدة في ذلك.",  # without tanween: folded like the pattern
        "لا أستطيع تنفيذ هذا الطلب.",
        "كنموذج ذكاء اصطناعي، قمت بتحسين النص التالي:\n" + AR_REWRITE,
        # English chatter around an Arabic document counts too.
        "Here is the rewritten text:\n" + AR_REWRITE,
        "```\n" + AR_REWRITE + "\n```",
    ],
)
def test_arabic_meta_text(rewrite):
  assert reason(AR_ORIGINAL, rewrite) == "meta_text"


@pytest.mark.parametrize(
    "original,rewrite",
    [
        # Meta-like phrases in the body are text, not meta-text.
        (
            "He said the rewritten text was better. Sure, here is the point: editors matter.",
            "He said that the rewritten text was better. Sure, here is the point: editors matter.",
        ),
        (
            "قال المحرر إن النص المعاد صياغته أفضل، وبالتأكيد لا أستطيع أن أخالفه الرأي في ذلك.",
            "قال المحرر إن النص المعاد صياغته أفضل، وبالتأكيد لا أستطيع أن أخالفه في ذلك.",
        ),
        # 'أسفل' (below) starts with the letters of 'آسف' (sorry) once hamza is folded.
        ("أسفل الصفحة تجد روابط المصادر والمراجع.", "أسفل الصفحة تجد روابط المصادر والمراجع."),
        # A document that opens like a chat reply, kept that way by the rewrite.
        (
            "I cannot recommend this hotel enough: the staff were kind and the rooms were clean.",
            "I cannot recommend this hotel enough. The staff were kind and the rooms were clean.",
        ),
        ("```python\nprint('hi')\n```", "```python\nprint('hi')\n```"),
        # Two code blocks with text between them are not one wrapper.
        ("```\na\n```\ntext\n```\nb\n```", "```\na\n```\ntext\n```\nb\n```"),
    ],
)
def test_not_meta_text(original, rewrite):
  assert not rf.has_meta_text(original, rewrite)


def test_meta_text_found_labels_and_extension():
  assert rf.meta_text_found(EN_REWRITE) == frozenset()
  assert rf.meta_text_found("```\nx\n```") == {"wrapper"}
  (label,) = rf.meta_text_found("عذرًا، لا أستطيع")
  assert label.startswith("ar:opener:")
  persian = {**rf.META_TEXT_PATTERNS, "fa": rf.MetaTextPatterns(openers=(r"البته[،!]",))}
  rewrite = "البته! " + AR_REWRITE
  assert reason(AR_ORIGINAL, rewrite) is None
  assert reason(AR_ORIGINAL, rewrite, meta_patterns=persian) == "meta_text"


def test_language():
  assert reason(AR_ORIGINAL, AR_TRANSLATED) == "language"
  assert reason(AR_ORIGINAL, AR_TRANSLATED, language=None) == "language"  # the original's
  assert reason(EN_ORIGINAL, AR_REWRITE, language="en") == "language"
  assert rf.language_mismatch(AR_ORIGINAL, AR_TRANSLATED, language="ar")
  assert not rf.language_mismatch(EN_ORIGINAL, AR_TRANSLATED, language=None)


def test_language_traditional_vs_simplified_chinese():
  traditional = "臺灣的夜市文化歷史悠久，遊客可以品嚐各種傳統小吃，例如蚵仔煎、臭豆腐和珍珠奶茶。"
  simplified = "台湾的夜市文化历史悠久，游客可以品尝各种传统小吃，例如蚵仔煎、臭豆腐和珍珠奶茶。"
  assert reason(traditional, traditional, language="zh-TW") is None
  assert reason(traditional, simplified, language="zh-TW") == "language"


def test_short_texts_are_not_judged_on_language():
  # 'Chapter One' is detected as Swedish; with under 20 letters the rule abstains.
  assert not rf.language_mismatch("Chapter One", "Chapter One", language="en")
  assert not rf.language_mismatch("الفصل الأول", "Chapter One", language="ar")
  # The original decides with language=None: too short to tell, so no verdict.
  assert not rf.language_mismatch("Intro", AR_REWRITE, language=None)
  # Digits and punctuation only: undecided.
  assert not rf.language_mismatch(
      "2024-2025", "2024 - 2025 ..........................", language="ar"
  )
  # A short rewrite of a long original is still caught, by length.
  assert reason(AR_ORIGINAL, "Nile river") == "length_ratio"


def test_length_ratio():
  assert rf.length_ratio("abcd", "  ab ") == 0.5
  assert rf.length_ratio("", "") == 1.0
  assert rf.length_ratio(" ", "x") == math.inf
  first_sentence = AR_REWRITE.split("،")[0] + "."
  assert reason(AR_ORIGINAL, first_sentence) == "length_ratio"  # truncated
  expanded = AR_ORIGINAL + " " + AR_REWRITE
  assert rf.length_ratio(AR_ORIGINAL, expanded) > 1.5
  assert reason(AR_ORIGINAL, expanded) == "length_ratio"  # continued past the document
  # The band is configurable.
  assert reason(AR_ORIGINAL, expanded, max_ratio=2.5) is None
  assert reason(EN_ORIGINAL, EN_REWRITE, language="en", min_ratio=0.9) == "length_ratio"


def test_rule_order_first_failure_counts():
  refusal = "I'm sorry, but I cannot help with that."  # meta, English, and far too short
  assert reason(AR_ORIGINAL, refusal) == "meta_text"
  assert reason(AR_ORIGINAL, refusal, rules=("language", "length_ratio")) == "language"
  assert reason(AR_ORIGINAL, refusal, rules=("length_ratio",)) == "length_ratio"
  assert reason(AR_ORIGINAL, refusal, rules=()) is None
  # A translation that is also too long: language before length_ratio.
  long_translation = AR_TRANSLATED + " " + AR_TRANSLATED
  assert reason(AR_ORIGINAL, long_translation) == "language"
  # The order of `rules` does not change the fixed order.
  assert reason(AR_ORIGINAL, refusal, rules=("length_ratio", "meta_text")) == "meta_text"
  assert rf.RULES == ("empty", "meta_text", "language", "length_ratio")


def test_filter_rewrites_counts():
  pairs = [
      (AR_ORIGINAL, AR_REWRITE),  # kept
      (AR_ORIGINAL, " "),  # empty
      (AR_ORIGINAL, "إليك النص المعاد صياغته:\n" + AR_REWRITE),  # meta_text
      (AR_ORIGINAL, AR_TRANSLATED),  # language
      (AR_ORIGINAL, AR_REWRITE[:40]),  # length_ratio
      (AR_ORIGINAL, AR_ORIGINAL),  # kept
  ]
  result = rf.filter_rewrites(pairs, language="ar")
  assert result.kept == (0, 5)
  assert result.dropped == {1: "empty", 2: "meta_text", 3: "language", 4: "length_ratio"}
  assert result.counts == {
      "kept": 2,
      "dropped_empty": 1,
      "dropped_meta_text": 1,
      "dropped_language": 1,
      "dropped_length_ratio": 1,
  }
  only_empty = rf.filter_rewrites(pairs, language="ar", rules=["empty"])
  assert only_empty.kept == (0, 2, 3, 4, 5)
  assert only_empty.counts["dropped_meta_text"] == 0
  assert rf.filter_rewrites([], language="ar").counts["kept"] == 0


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"min_ratio": -0.1}, "min_ratio"),
        ({"min_ratio": math.nan}, "min_ratio"),
        ({"min_ratio": 1.2, "max_ratio": 1.0}, "max_ratio"),
        ({"max_ratio": math.inf}, "max_ratio"),
        ({"min_letters": -1}, "min_letters"),
        ({"rules": ("empty", "toxicity")}, "rules"),
        ({"rules": "empty"}, "rules"),
    ],
)
def test_bad_settings_name_the_argument(kwargs, name):
  with pytest.raises(ValueError, match=f"^{name}[ :]") as info:
    rf.filter_rewrites([(AR_ORIGINAL, AR_REWRITE)], language="ar", **kwargs)
  assert "\n" not in str(info.value)
