"""Exact and MinHash-LSH near-duplicate removal (`langshift.data.dedup`)."""

import json
import os
import subprocess
import sys

import pytest

from langshift.data import dedup

# 60 words; NEAR changes three consecutive words (about 0.75 Jaccard of word 5-grams).
PARAGRAPH = (
    "The old harbour of the city was rebuilt after the great storm of the last century, and "
    "today its narrow streets lead visitors past fishing boats, small cafes and the market where "
    "traders sell spices, dried fruit and fresh bread every morning before the heat of the day "
    "arrives and the square slowly empties until the evening lamps are lit"
)
NEAR = PARAGRAPH.replace("sell spices, dried fruit", "offer saffron, salted fish")
OTHER = (
    "Photosynthesis converts light energy into chemical energy: chlorophyll absorbs red and blue "
    "light, water is split, oxygen is released, and the captured energy drives the fixation of "
    "carbon dioxide into sugars in the Calvin cycle inside the chloroplast stroma."
)
ARABIC = (
    "تقع المدينة القديمة على ضفاف النهر، وقد أعيد بناء أسواقها بعد الفيضان الكبير في القرن "
    "الماضي. واليوم يتجول الزوار في شوارعها الضيقة بين المقاهي الصغيرة ومحلات التوابل والتمور "
    "والخبز الطازج، ويقصد التجار الساحة كل صباح قبل اشتداد الحر، ثم تهدأ الحركة تدريجيا حتى تضاء "
    "المصابيح في المساء على طول الكورنيش وتعود العائلات للتنزه قرب الماء بعد يوم طويل من العمل"
)
ARABIC_NEAR = ARABIC.replace("محلات التوابل والتمور", "دكاكين العطور والحلوى")
ARABIC_OTHER = (
    "يعد التمثيل الضوئي عملية تحول فيها النباتات الخضراء طاقة الضوء إلى طاقة كيميائية، إذ يمتص "
    "اليخضور الضوء ويستخدمه في تفكيك الماء وإطلاق الأكسجين وتثبيت ثاني أكسيد الكربون "
    "في صورة سكريات."
)


def test_paragraph_has_sixty_words():
  assert len(PARAGRAPH.split()) == 60


def test_normalisation_folds_case_width_space_and_arabic_spelling():
  assert dedup.normalize_for_dedup("  Hello\t\nWORLD  ") == "hello world"
  assert dedup.normalize_for_dedup("ＡＢＣ straße") == "abc strasse"
  # Diacritics, tatweel, hamza-carrying alef, alef maksura and teh marbuta.
  assert dedup.normalize_arabic("العَرَبِيَّةُ") == dedup.normalize_arabic("العـــربيه")
  assert dedup.normalize_arabic("إلى أين") == "الي اين"
  # Presentation-form lam-alef (U+FEFB) becomes lam + alef under NFKC.
  assert dedup.normalize_for_dedup("\ufefb") == "لا"
  # Combining marks of other scripts are letters there and stay.
  assert dedup.normalize_arabic("हिंदी") == "हिंदी"


def test_exact_duplicates_differing_in_case_whitespace_and_tatweel_are_removed():
  texts = [
      "Breaking news: the bridge reopens today.",
      "BREAKING NEWS:   the bridge\nreopens today.",
      "مرحبا بكم في المدينة",
      "مرحـــبا بكم   في المدينة",
      "مَرْحَبًا بكم في المدينة",
  ]
  result = dedup.deduplicate(texts)
  assert result.kept == (0, 2)
  assert result.removed == {
      1: dedup.Duplicate(0, "exact"),
      3: dedup.Duplicate(2, "exact"),
      4: dedup.Duplicate(2, "exact"),
  }
  assert result.counts == {"kept": 2, "exact_removed": 3, "near_removed": 0}
  assert dedup.exact_hash(texts[0]) == dedup.exact_hash(texts[1])


@pytest.mark.parametrize("base,near", [(PARAGRAPH, NEAR), (ARABIC, ARABIC_NEAR)])
def test_near_duplicate_removed_at_0_7_and_kept_at_0_95(base, near):
  loose = dedup.deduplicate([base, OTHER, near], threshold=0.7)
  assert loose.kept == (0, 1)
  assert loose.removed == {2: dedup.Duplicate(0, "near")}
  assert loose.counts == {"kept": 2, "exact_removed": 0, "near_removed": 1}
  strict = dedup.deduplicate([base, OTHER, near], threshold=0.95)
  assert strict.kept == (0, 1, 2)
  assert strict.counts == {"kept": 3, "exact_removed": 0, "near_removed": 0}


def test_first_occurrence_is_kept_whichever_comes_first():
  result = dedup.deduplicate([NEAR, PARAGRAPH], threshold=0.7)
  assert result.kept == (0,)
  assert result.removed == {1: dedup.Duplicate(0, "near")}


def test_distinct_documents_are_all_kept():
  texts = [PARAGRAPH, OTHER, ARABIC, ARABIC_OTHER, "short note", "another short note"]
  result = dedup.deduplicate(texts)
  assert result.kept == tuple(range(len(texts)))
  assert result.removed == {}


def test_exact_copy_of_a_near_duplicate_points_at_its_first_occurrence():
  result = dedup.deduplicate([PARAGRAPH, NEAR, NEAR.upper()], threshold=0.7)
  assert result.kept == (0,)
  assert result.removed[1] == dedup.Duplicate(0, "near")
  assert result.removed[2] == dedup.Duplicate(1, "exact")
  assert result.representative(2) == 0
  assert result.representative(0) == 0


def test_char_shingles_for_text_without_spaces():
  text = (
      "長城是中國古代的軍事防禦工程，綿延上萬里，"
      "修築歷史可上溯到西周時期，秦始皇統一六國後連接各段城牆。"
  )
  near = text.replace("綿延上萬里", "綿延數千里")
  result = dedup.deduplicate([text, near], unit="char", shingle=3, threshold=0.7)
  assert result.removed == {1: dedup.Duplicate(0, "near")}
  # As one "word", the Chinese sentence is a single shingle: only identical texts would match.
  assert dedup.deduplicate([text, near], unit="word", threshold=0.7).kept == (0, 1)


def test_shingles():
  assert dedup.shingles("a b c d", size=2, unit="word") == {"a b", "b c", "c d"}
  assert dedup.shingles("a b", size=5, unit="word") == {"a b"}
  assert dedup.shingles("abcd", size=3, unit="char") == {"abc", "bcd"}
  assert dedup.shingles("", size=3, unit="char") == set()


def test_empty_input_and_empty_documents():
  result = dedup.deduplicate([])
  assert result.kept == ()
  assert result.counts == {"kept": 0, "exact_removed": 0, "near_removed": 0}
  blanks = dedup.deduplicate(["", "  \n", "text"])
  assert blanks.kept == (0, 2)
  assert blanks.removed == {1: dedup.Duplicate(0, "exact")}


def test_threshold_one_removes_only_identical_shingle_sets():
  # Not exact duplicates, but the same set of character 3-grams {abc, bca, cab}.
  result = dedup.deduplicate(
      ["abcabcab", "abcabcabcab", "abcabd"], unit="char", shingle=3, threshold=1.0
  )
  assert result.removed == {1: dedup.Duplicate(0, "near")}


CORPUS = [PARAGRAPH, OTHER, NEAR, ARABIC, ARABIC_NEAR, PARAGRAPH.lower(), ARABIC_OTHER]


def _summary(result):
  return [
      list(result.kept),
      sorted([i, d.of, d.reason] for i, d in result.removed.items()),
  ]


def test_deterministic_across_runs_and_python_hash_seeds():
  first = _summary(dedup.deduplicate(CORPUS, threshold=0.7))
  assert first == _summary(dedup.deduplicate(CORPUS, threshold=0.7))
  assert first == [[0, 1, 3, 6], [[2, 0, "near"], [4, 3, "near"], [5, 0, "exact"]]]
  script = (
      "import json, sys\n"
      "from langshift.data import dedup\n"
      "import test_dedup as t\n"
      "print(json.dumps(t._summary(dedup.deduplicate(t.CORPUS, threshold=0.7))))\n"
  )
  for hash_seed in ("0", "4242"):
    env = dict(os.environ, PYTHONHASHSEED=hash_seed)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(__file__), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == first


def test_exact_only():
  result = dedup.deduplicate([PARAGRAPH, NEAR, PARAGRAPH.upper()], threshold=0.7, near=False)
  assert result.kept == (0, 1)
  assert result.removed == {2: dedup.Duplicate(0, "exact")}
  assert (result.exact_removed, result.near_removed) == (1, 0)
  ((index, (of, reason)),) = result.removed.items()
  assert (index, of, reason) == (2, 0, "exact")


def test_streaming_deduplicator_matches_batch():
  stream = dedup.Deduplicator(threshold=0.7)
  decisions = [stream.add(text) for text in CORPUS]
  batch = dedup.deduplicate(CORPUS, threshold=0.7)
  assert [i for i, d in enumerate(decisions) if d is None] == list(batch.kept)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": 1.5}, "threshold"),
        ({"num_perm": 1}, "num_perm"),
        ({"num_perm": 64.0}, "num_perm"),
        ({"shingle": 0}, "shingle"),
        ({"unit": "token"}, "unit"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_settings_name_the_argument(kwargs, name):
  with pytest.raises(ValueError, match=f"^{name} ") as info:
    dedup.deduplicate(["a"], **kwargs)
  assert "\n" not in str(info.value)
