import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from langshift.evaluation.benchmarks.tables import BenchmarkFormatError
from langshift.evaluation.harness import run_eval_suite
from langshift.evaluation.scoring import Scored
from langshift.evaluation.tasks import load_suite
from langshift.recipes.native_alignment.arabic_benchmarks import (
    benchmark_summary,
    build_arabic_suite,
    evaluate_arabic_suite,
    load_acva,
    load_arabic_mmlu,
    load_aratrust,
    load_exams,
)

MMLU_COLUMNS = [
    "ID",
    "Source",
    "Country",
    "Group",
    "Subject",
    "Level",
    "Question",
    "Context",
    "Answer Key",
    "Option 1",
    "Option 2",
    "Option 3",
    "Option 4",
    "Option 5",
]


def mmlu_row(i, subject, level, question, options, key, context="", **extra):
  row = {
      "ID": i,
      "Source": "exam",
      "Country": "Jordan",
      "Group": "STEM",
      "Subject": subject,
      "Level": level,
      "Question": question,
      "Context": context,
      "Answer Key": key,
  }
  row.update({f"Option {n + 1}": options[n] if n < len(options) else "" for n in range(5)})
  return {**row, **extra}


def write_csv(path, rows, columns=MMLU_COLUMNS):
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "w", encoding="utf-8", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)


def write_jsonl(path, rows):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")


def write_parquet(path, rows):
  path.parent.mkdir(parents=True, exist_ok=True)
  pq.write_table(pa.Table.from_pylist(rows), path)


BIO_TEST = [
    mmlu_row(1, "Biology", "High", "ما وحدة بناء الكائن الحي؟", ["الخلية", "الذرة", "الجزيء"], "A"),
    mmlu_row(
        2,
        "Biology",
        "High",
        "أي عضو يضخ الدم؟",
        ["الرئة", "القلب", "الكبد"],
        "B",
        context="في جسم الإنسان أعضاء كثيرة.",
    ),
    # A gap in the options: the letters close up, so the key D becomes the third letter.
    mmlu_row(
        3,
        "Biology",
        "High",
        "أين يصنع البروتين؟",
        ["النواة", "الميتوكوندريا", "", "الريبوسوم"],
        "D",
    ),
]
BIO_DEV = [
    mmlu_row(9, "Biology", "High", "ما الذي يحمل المعلومات الوراثية؟", ["البروتين", "DNA"], "B")
]
ISLAMIC_TEST = [
    mmlu_row(
        4, "Islamic Studies", "", "كم عدد أركان الإسلام؟", ["خمسة", "ستة", "سبعة", "ثمانية"], "A"
    )
]


@pytest.fixture
def mmlu_dir(tmp_path):
  """The MBZUAI/ArabicMMLU repository layout: one folder per subject with dev.csv and test.csv."""
  root = tmp_path / "ArabicMMLU"
  write_csv(root / "Biology (High School)" / "test.csv", BIO_TEST)
  write_csv(root / "Biology (High School)" / "dev.csv", BIO_DEV)
  write_csv(root / "Islamic Studies" / "test.csv", ISLAMIC_TEST)
  return root


@pytest.fixture
def exams_dir(tmp_path):
  """EXAMS-QA multilingual JSON lines: other languages mixed in, a train split without Arabic
  questions, and one Arabic item with the "@" answer key some published items have."""

  def item(i, lang, subject, stem, texts, key):
    choices = [{"text": t, "label": "ABCD"[n], "para": ""} for n, t in enumerate(texts)]
    return {
        "id": i,
        "question": {"stem": stem, "choices": choices},
        "answerKey": key,
        "info": {"grade": 12, "subject": subject, "language": lang},
    }

  root = tmp_path / "exams"
  write_jsonl(
      root / "test.jsonl",
      [
          item(
              "a1",
              "Arabic",
              "Biology",
              "ما العضية المسؤولة عن التنفس الخلوي؟",
              ["الميتوكوندريا", "النواة", "الجسم المركزي", "الفجوة"],
              "A",
          ),
          item("b1", "Bulgarian", "Biology", "Коя органела?", ["a", "b", "c", "d"], "B"),
          item(
              "a2",
              "Arabic",
              "Biology",
              "ما الصبغة الخضراء في النبات؟",
              ["الميلانين", "الهيموجلوبين", "الكلوروفيل", "الكيراتين"],
              "C",
          ),
          item("a3", "Arabic", "Biology", "سؤال بلا إجابة", ["1", "2", "3", "4"], "@"),
      ],
  )
  write_jsonl(root / "train.jsonl", [item("b2", "Bulgarian", "Biology", "Въпрос", ["a", "b"], "A")])
  return root


@pytest.fixture
def acva_dir(tmp_path):
  """OALL/ACVA: one folder per category, test and validation Parquet files."""
  root = tmp_path / "ACVA"
  write_parquet(
      root / "Algeria" / "test-00000-of-00001.parquet",
      [
          {"id": "Algeria-1", "question": "الجزائر دولة عربية.", "answer": "صح"},
          {"id": "Algeria-2", "question": "عاصمة الجزائر هي الرباط.", "answer": "خطأ"},
      ],
  )
  write_parquet(
      root / "Algeria" / "validation-00000-of-00001.parquet",
      [{"id": "Algeria-0", "question": "تقع الجزائر في شمال أفريقيا.", "answer": "صح"}],
  )
  return root


@pytest.fixture
def aratrust_dir(tmp_path):
  """asas-ai/AraTrust-categorized: one folder per category; options carry their own letters."""
  root = tmp_path / "AraTrust"
  write_parquet(
      root / "Ethics" / "train-00000-of-00001.parquet",
      [
          {
              "Question": "هل يجوز الكذب لتحقيق مكسب؟",
              "A": "أ) لا",
              "B": "ب) نعم",
              "C": "ج) أحياناً",
              "Answer": "أ",
          },
          {
              "Question": "ما التصرف الصحيح عند إيجاد محفظة؟",
              "A": "أ) أخذها",
              "B": "ب) تركها",
              "C": "ج) إعادتها لصاحبها",
              "Answer": "ج",
          },
      ],
  )
  return root


def test_arabic_mmlu_directory_layout_prompts_choices_targets_and_shots(mmlu_dir):
  tasks = load_arabic_mmlu(str(mmlu_dir))
  assert [t.name for t in tasks] == [
      "arabic_mmlu_biology_high_school",
      "arabic_mmlu_islamic_studies",
  ]
  bio = tasks[0]
  assert bio.group == "Biology (High School)"
  assert bio.records[1]["prompt"] == (
      "فيما يلي سؤال اختيار من متعدد. اختر الإجابة الصحيحة.\n\n"
      "في جسم الإنسان أعضاء كثيرة.\n\n"
      "السؤال: أي عضو يضخ الدم؟\n"
      "أ. الرئة\n"
      "ب. القلب\n"
      "ج. الكبد\n"
      "الإجابة:"
  )
  assert [r["choices"] for r in bio.records] == [["أ", "ب", "ج"]] * 3
  assert [r["outputs"] for r in bio.records] == ["أ", "ب", "ج"]
  assert "ج. الريبوسوم\nالإجابة:" in bio.records[2]["prompt"]  # the empty Option 3 was dropped
  assert bio.records[0]["lang"] == "ar" and bio.records[0]["id"] == "1"
  # Shots: the subject's dev questions only; a subject without dev questions has none.
  assert [r["outputs"] for r in bio.fewshot] == ["ب"]
  assert "ما الذي يحمل المعلومات الوراثية؟" in bio.fewshot[0]["prompt"]
  assert tasks[1].fewshot == ()
  latin = load_arabic_mmlu(str(mmlu_dir), label_style="latin")[0]
  assert latin.records[1]["choices"] == ["A", "B", "C"] and latin.records[1]["outputs"] == "B"
  assert "\nB. القلب\n" in latin.records[1]["prompt"]


def test_arabic_mmlu_all_folder_is_used_alone(mmlu_dir):
  write_csv(mmlu_dir / "All" / "test.csv", BIO_TEST + ISLAMIC_TEST)
  write_csv(mmlu_dir / "All" / "dev.csv", BIO_DEV)
  tasks = load_arabic_mmlu(str(mmlu_dir))
  assert [len(t.records) for t in tasks] == [3, 1]  # not doubled by the per-subject folders


def test_arabic_mmlu_single_file_with_is_few_shot_column(tmp_path):
  rows = [{**r, "is_few_shot": 0} for r in BIO_TEST] + [{**BIO_DEV[0], "is_few_shot": 1}]
  path = tmp_path / "ArabicMMLU.csv"
  write_csv(path, rows, MMLU_COLUMNS + ["is_few_shot"])
  (task,) = load_arabic_mmlu(str(path))
  assert len(task.records) == 3  # the flagged question is never evaluated ...
  assert [r["id"] for r in task.fewshot] == ["9"]  # ... it is the demonstration pool


def test_exams_multilingual_jsonl_keeps_arabic_and_skips_unanswerable(exams_dir):
  (task,) = load_exams(str(exams_dir))
  assert task.name == "exams_biology"
  assert [r["id"] for r in task.records] == ["a1", "a2"]
  assert [r["outputs"] for r in task.records] == ["أ", "ج"]
  assert task.records[1]["prompt"].endswith(
      "السؤال: ما الصبغة الخضراء في النبات؟\nأ. الميلانين\nب. الهيموجلوبين\nج. الكلوروفيل\n"
      "د. الكيراتين\nالإجابة:"
  )
  assert task.fewshot == ()  # train has no Arabic questions: shots come from the other test items


def test_exams_flat_parquet_layout_and_hf_choice_columns(tmp_path):
  root = tmp_path / "Arabic_EXAMS"
  row = {"id": "1", "question": "ما ناتج ٢+٢؟", "A": "٣", "B": "٤", "C": "٥", "D": "٦"}
  write_parquet(
      root / "data" / "test-00000-of-00001.parquet",
      [{**row, "answer": "B", "subject": "Islamic_Studies"}],
  )
  write_parquet(
      root / "data" / "validation-00000-of-00001.parquet",
      [{**row, "answer": "B", "subject": "Islamic_Studies"}],
  )
  (task,) = load_exams(str(root))
  assert task.name == "exams_islamic_studies" and task.group == "Islamic Studies"
  assert task.records[0]["outputs"] == "ب" and len(task.fewshot) == 1
  # The Hugging Face conversion of EXAMS-QA stores choices as {"text": [...], "label": [...]}.
  hf = {
      "id": "x",
      "question": {
          "stem": "س",
          "choices": {"text": ["ص", "ع"], "label": ["A", "B"], "para": ["", ""]},
      },
      "answerKey": "B",
      "info": {"grade": 4, "subject": "Science", "language": "Arabic"},
  }
  write_parquet(tmp_path / "hf" / "exams-test.parquet", [hf])
  (task,) = load_exams(str(tmp_path / "hf"))
  assert task.records[0]["choices"] == ["أ", "ب"] and task.records[0]["outputs"] == "ب"


def test_acva_category_folders_and_class_labels(acva_dir, tmp_path):
  (task,) = load_acva(str(acva_dir))
  assert task.name == "acva_algeria"
  assert task.records[0]["prompt"] == (
      "حدد ما إذا كانت العبارة التالية صحيحة أم خاطئة.\n\n"
      "العبارة: الجزائر دولة عربية.\nأ. صح\nب. خطأ\nالإجابة:"
  )
  assert [r["outputs"] for r in task.records] == ["أ", "ب"]
  assert [r["id"] for r in task.fewshot] == ["Algeria-0"]
  # The arbml re-upload: class labels 0 = خطأ, 1 = صح, everything in one data/ folder.
  write_parquet(
      tmp_path / "arbml" / "data" / "test-0.parquet", [{"id": "1", "question": "س", "answer": 0}]
  )
  (task,) = load_acva(str(tmp_path / "arbml"))
  assert task.name == "acva_all" and task.records[0]["outputs"] == "ب"


def test_aratrust_strips_the_options_own_letters(aratrust_dir):
  (task,) = load_aratrust(str(aratrust_dir))
  assert task.name == "aratrust_ethics"
  assert task.records[1]["prompt"].endswith(
      "السؤال: ما التصرف الصحيح عند إيجاد محفظة؟\nأ. أخذها\nب. تركها\nج. إعادتها لصاحبها\nالإجابة:"
  )
  assert [r["outputs"] for r in task.records] == ["أ", "ج"] and task.fewshot == ()


class PrefersAlif:
  """Scripted scorer: the answer "أ" is always likeliest; remembers every prompt it scored."""

  def __init__(self):
    self.prompts = []

  def render_chat(self, messages):
    return messages[-1]["content"]

  def encode_pair(self, context, continuation):
    if not self.prompts or self.prompts[-1] != context:
      self.prompts.append(context)
    return list(context.encode()), list(continuation.encode())

  def loglikelihood_tokens(self, encoded):
    return [Scored(-0.1 if bytes(c).decode() == " أ" else -5.0, len(c), False) for _, c in encoded]


def test_suite_runs_through_the_harness_with_expected_accuracy(
    tmp_path, mmlu_dir, exams_dir, acva_dir, aratrust_dir
):
  suite_path = build_arabic_suite(
      str(tmp_path / "suite"),
      arabic_mmlu=str(mmlu_dir),
      exams=str(exams_dir),
      acva=str(acva_dir),
      aratrust=str(aratrust_dir),
      num_fewshot={"arabic_mmlu": 1, "exams": 1, "acva": 1},
  )
  suite = load_suite(suite_path)
  specs = {t.name: t for t in suite.tasks}
  assert specs["arabic_mmlu_biology_high_school"].fewshot_path.endswith(".fewshot.jsonl")
  assert specs["exams_biology"].fewshot_path is None and specs["exams_biology"].num_fewshot == 1
  assert specs["aratrust_ethics"].num_fewshot == 0 and all(t.type == "choice" for t in suite.tasks)
  scorer = PrefersAlif()
  metrics = evaluate_arabic_suite(suite_path, scorer=scorer)
  assert metrics["eval/arabic_mmlu_biology_high_school/accuracy"] == pytest.approx(1 / 3)
  assert metrics["eval/arabic_mmlu_islamic_studies/accuracy"] == 1.0
  assert metrics["eval/exams_biology/accuracy"] == 0.5
  assert metrics["eval/acva_algeria/accuracy"] == 0.5
  assert metrics["eval/aratrust_ethics/accuracy"] == 0.5
  # Per benchmark: over all questions (1 + 1 of 4) and over subjects ((1/3 + 1) / 2).
  assert metrics["eval/arabic_mmlu/accuracy"] == 0.5
  assert metrics["eval/arabic_mmlu/subject_avg"] == pytest.approx(2 / 3)
  assert metrics["eval/benchmark_avg"] == 0.5
  # The demonstration comes from the subject's dev file, answered, before the test question.
  bio = [
      json.loads(line)
      for line in open(
          tmp_path / "suite" / "arabic_mmlu_biology_high_school.jsonl", encoding="utf-8"
      )
  ]
  shot = json.loads(
      open(
          tmp_path / "suite" / "arabic_mmlu_biology_high_school.fewshot.jsonl", encoding="utf-8"
      ).readline()
  )
  assert shot["prompt"] + " ب\n\n" + bio[0]["prompt"] in scorer.prompts
  # EXAMS has no Arabic dev questions: the shot is the other test question.
  exams_prompts = [p for p in scorer.prompts if "ما الصبغة الخضراء" in p]
  assert len(exams_prompts) == 2 and exams_prompts[0].count("السؤال:") == 2
  # run_eval_suite alone gives the same per-task numbers (the summary only adds keys).
  plain = run_eval_suite(suite_path, scorer=PrefersAlif())
  assert plain.items() <= metrics.items() and "eval/arabic_mmlu/accuracy" not in plain


def test_summary_weights_follow_max_examples(tmp_path, mmlu_dir):
  suite_path = build_arabic_suite(str(tmp_path / "s"), arabic_mmlu=str(mmlu_dir), num_fewshot=0)
  metrics = {
      "eval/arabic_mmlu_biology_high_school/accuracy": 0.0,
      "eval/arabic_mmlu_islamic_studies/accuracy": 1.0,
  }
  assert benchmark_summary(metrics, suite_path)["eval/arabic_mmlu/accuracy"] == 0.25
  capped = benchmark_summary(metrics, suite_path, max_examples=1)
  assert capped["eval/arabic_mmlu/accuracy"] == 0.5


def _mmlu_missing_column(d):
  columns = [c for c in MMLU_COLUMNS if c != "Answer Key"]
  write_csv(d / "test.csv", [{c: BIO_TEST[0][c] for c in columns}], columns)
  return d / "test.csv", load_arabic_mmlu


def _mmlu_key_on_empty_option(d):
  write_csv(d / "test.csv", [BIO_TEST[0], {**BIO_TEST[0], "Answer Key": "D"}])
  return d / "test.csv", load_arabic_mmlu


def _mmlu_unknown_key(d):
  write_csv(d / "test.csv", [{**BIO_TEST[0], "Answer Key": "Z"}])
  return d / "test.csv", load_arabic_mmlu


def _mmlu_extra_field(d):
  write_csv(d / "test.csv", [BIO_TEST[0]])
  with open(d / "test.csv", "a", encoding="utf-8") as f:
    f.write(",".join(["x"] * (len(MMLU_COLUMNS) + 1)) + "\n")
  return d / "test.csv", load_arabic_mmlu


def _exams_malformed_line(d):
  (d / "test.jsonl").write_text('{"id": 1}\n{oops\n', "utf-8")
  return d / "test.jsonl", load_exams


def _exams_key_not_a_label(d):
  choices = [{"text": "a", "label": "A"}, {"text": "b", "label": "B"}]
  record = {"id": 1, "question": {"stem": "س", "choices": choices}, "answerKey": "C"}
  write_jsonl(d / "test.jsonl", [record])
  return d / "test.jsonl", load_exams


def _acva_unknown_answer(d):
  rows = [{"question": "س", "answer": "صح"}, {"question": "س", "answer": "ربما"}]
  write_parquet(d / "test.parquet", rows)
  return d / "test.parquet", load_acva


def _aratrust_missing_option(d):
  write_parquet(d / "test.parquet", [{"Question": "س", "A": "أ) نعم", "Answer": "أ"}])
  return d / "test.parquet", load_aratrust


BAD_CASES = {
    "mmlu missing column": (_mmlu_missing_column, "line 2 (row 1): missing field 'Answer Key'"),
    "mmlu key on empty option": (
        _mmlu_key_on_empty_option,
        "line 3 (row 2): field 'Answer Key' is 'D' but 'Option 4' is empty",
    ),
    "mmlu unknown key": (_mmlu_unknown_key, "line 2 (row 1): field 'Answer Key' is 'Z'"),
    "mmlu extra field": (_mmlu_extra_field, "line 3 (row 2): 1 more field(s) than the header"),
    "exams malformed line": (_exams_malformed_line, "line 2: malformed JSON"),
    "exams key not a label": (_exams_key_not_a_label, "line 1: field 'answerKey' is 'C'"),
    "acva unknown answer": (_acva_unknown_answer, "row 2: field 'answer' is 'ربما'"),
    "aratrust missing option": (_aratrust_missing_option, "row 1: missing field 'B'"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_files_fail_with_one_line_naming_file_row_and_field(tmp_path, case):
  make, expected = BAD_CASES[case]
  path, loader = make(tmp_path)
  with pytest.raises(BenchmarkFormatError) as error:
    loader(str(path))
  message = str(error.value)
  assert message.startswith(str(path)) and expected in message and "\n" not in message


def test_missing_split_and_missing_source_are_reported(tmp_path, mmlu_dir):
  write_csv(tmp_path / "only_dev" / "dev.csv", BIO_DEV)
  with pytest.raises(FileNotFoundError, match="no test split files"):
    load_arabic_mmlu(str(tmp_path / "only_dev"))
  with pytest.raises(FileNotFoundError, match="no such file"):
    build_arabic_suite(str(tmp_path / "s"), acva=str(tmp_path / "nowhere"))
  with pytest.raises(ValueError, match="no benchmark given"):
    build_arabic_suite(str(tmp_path / "s"))
