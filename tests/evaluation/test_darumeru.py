"""The Darumeru suite on tiny files in the published layouts (made here, nothing downloaded)."""

import json

import pytest

from langshift.evaluation import use_exam
from langshift.evaluation.harness import run_eval_suite, run_task
from langshift.evaluation.scoring import Scored
from langshift.evaluation.tasks import (
    Example,
    TaskSpec,
    load_examples,
    load_suite,
    resolve_suite_path,
)
from langshift.rehearsal import darumeru_files


def _jsonl(path, rows):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")


_choice_record = darumeru_files.choice_record


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("data")
  darumeru_files.write_darumeru_files(str(root))
  return root


class PrefersFirstLabel:
  """Scores the first label of every task highest; remembers every prompt."""

  def __init__(self):
    self.contexts = []

  def render_chat(self, messages):
    return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

  def encode_pair(self, context, continuation):
    if not self.contexts or self.contexts[-1] != context:
      self.contexts.append(context)
    return list(context.encode()), list(continuation.encode())

  def loglikelihood_tokens(self, encoded):
    first = {" 1", " A", " Да", " 0"}
    return [Scored(-0.1 if bytes(c).decode() in first else -3.0, len(c), False) for _, c in encoded]


class Answers:
  """A generator that answers every prompt with one fixed text."""

  def __init__(self, text):
    self.text, self.prompts = text, []

  def complete(self, prompts, options):
    self.prompts += prompts
    return [self.text] * len(prompts)

  def chat(self, conversations, options):
    return [self.text] * len(conversations)


def test_every_task_of_the_suite_reads_its_published_layout(data_dir):
  suite = load_suite(resolve_suite_path("darumeru"), data_dir=str(data_dir))
  names = [t.name for t in suite.tasks]
  for name in ("multiq", "parus", "rcb", "rummlu", "ruopenbookqa", "ruworldtree", "rwsd", "use"):
    assert name in names
  assert {"cp_sent_ru", "cp_para_en", "rucola", "mmlu_ru", "mmlu_en", "gazeta"} <= set(names)
  # Darumeru's protocol: base models 5-shot, instruct models zero-shot.
  assert {t.num_fewshot for t in suite.tasks} == {5}
  metrics = run_eval_suite(suite, scorer=PrefersFirstLabel(), generator=Answers("Москва"))
  # Labels cycle through the choices, so "the first label" is right 1/len(choices) of the time.
  assert metrics["eval/parus/accuracy"] == pytest.approx(0.5)
  assert metrics["eval/rcb/accuracy"] == pytest.approx(2 / 6)
  assert metrics["eval/rwsd/accuracy"] == pytest.approx(0.5)
  assert metrics["eval/rucola/accuracy"] == pytest.approx(0.5)
  assert metrics["eval/mmlu_ru/accuracy"] == pytest.approx(1 / 3)
  assert metrics["eval/multiq/f1"] == 1.0  # "Москва" is one of the references
  assert metrics["eval/cp_sent_ru/length_ratio"] < 1.0 and "eval/gazeta/rouge12_recall" in metrics


def test_darumeru_prompts_follow_the_records_turns(data_dir):
  suite = load_suite(resolve_suite_path("darumeru"), data_dir=str(data_dir))
  parus = next(t for t in suite.tasks if t.name == "parus")
  scorer = PrefersFirstLabel()
  run_task(parus, scorer=scorer, num_fewshot=2)
  # System text once, then the prompt file's first two records nearest-last, then the query with
  # its opened answer; the label follows after a space.
  assert scorer.contexts[0] == (
      "Реши задачу.\n\n"
      "Вопрос 1: что верно 1?\n1. это\n2. то\n\nОтвет: 2\n\n"
      "Вопрос 0: что верно 0?\n1. это\n2. то\n\nОтвет: 1\n\n"
      "Вопрос 0: что верно 0?\n1. это\n2. то\n\nОтвет:"
  )
  chat = PrefersFirstLabel()
  run_task(parus, scorer=chat, chat=True)
  assert chat.contexts[0] == (
      "<system>Реши задачу.<user>Вопрос 0: что верно 0?\n1. это\n2. то<assistant>Ответ:"
  )


def test_mmlu_demonstrations_come_from_the_subjects_dev_split(data_dir):
  spec = TaskSpec(
      name="mmlu_en",
      type="choice",
      format="mmlu",
      path=str(data_dir / "mmlu_ru"),
      fewshot_path=str(data_dir / "mmlu_ru"),
      choices=("A", "B", "C", "D"),
      num_fewshot=1,
      fewshot_sampler="first_n",
      language="en",
  )
  scorer = PrefersFirstLabel()
  run_task(spec, scorer=scorer)
  assert scorer.contexts[3] == (
      "The following are multiple choice questions (with answers) about virology.\n\n"
      "Question virology 0?\nA. a\nB. b\nC. c\nD. d\n\nAnswer: A\n\n"
      "Question virology 0?\nA. a\nB. b\nC. c\nD. d\n\nAnswer:"
  )


def test_use_grade_follows_the_exam_rules():
  assert use_exam.multiple_choice_score("2,4", "4, 2") == 1
  assert use_exam.multiple_choice_score("2,4", "2") == 0
  assert use_exam.multiple_choice_score("1,3,5", "1,3", task_16=True) == 2
  assert use_exam.multiple_choice_score("1,3,5", "1,2,4,5", task_16=True) == 1
  assert use_exam.matching_score("3,1,2", "3,1,4") == 2
  assert use_exam.text_score("мама,мать", "Мать.") == 1
  examples = [
      Example("", "2,4", meta={"type": "multiple_choice", "id_task": "1", "variant": 1}),
      Example("", "3,1,2", meta={"type": "matching", "id_task": "26", "variant": 1}),
      Example("", "мама,мать", meta={"type": "text", "id_task": "7", "variant": 2}),
  ]
  # Variant 1: 1 + 3 points, variant 2: 1 point, each out of 34.
  got = use_exam.grade_norm(["2,4", "3,1,2", "мама"], examples)
  assert got == pytest.approx((4 / 34 + 1 / 34) / 2)


def test_bad_files_are_one_line_errors_naming_file_line_and_field(tmp_path):
  spec = TaskSpec(name="parus", type="choice", format="darumeru", path="", choices=("1", "2"))
  bad = {**_choice_record(0, "3", "", False)}
  _jsonl(tmp_path / "test.jsonl", [_choice_record(0, "1", "", False), bad])
  with pytest.raises(ValueError, match=r"test\.jsonl line 2: field 'outputs' is '3', not one of"):
    load_examples(spec, str(tmp_path / "test.jsonl"))
  _jsonl(tmp_path / "test.jsonl", [{**bad, "messages": [{"role": "robot", "content": "x"}]}])
  with pytest.raises(ValueError, match=r"test\.jsonl line 1: message role .* is not one of"):
    load_examples(spec, str(tmp_path / "test.jsonl"))
  _jsonl(tmp_path / "test.jsonl", [{**bad, "inputs": {}}])
  with pytest.raises(
      ValueError, match=r"line 1: message placeholder 'n' is not filled by 'inputs'"
  ):
    load_examples(spec, str(tmp_path / "test.jsonl"))
  (tmp_path / "dev.csv").write_text("id,sentence,acceptable\n1,Текст,yes\n", "utf-8")
  rucola = TaskSpec(name="rucola", type="choice", format="rucola", path="", choices=("0", "1"))
  with pytest.raises(ValueError, match=r"dev\.csv line 2 \(row 1\): field 'acceptable' is 'yes'"):
    load_examples(rucola, str(tmp_path / "dev.csv"))
