"""Tiny files in the Darumeru suite's published layouts (`langshift/evaluation/darumeru.py`):
what a rehearsal of LEP's published setting evaluates, and what the suite's own tests read.

  darumeru/data/<task>/{test,prompt}.jsonl   RefalMachine/darumeru's records
  rucola/in_domain_{dev,train}.csv           RuCoLA
  mmlu_ru/<subject>/{dev,test}-*.parquet     NLPCoreTeam/mmlu_ru
  gazeta/gazeta_{test,val}.jsonl             IlyaGusev/gazeta

Six records per choice task with the labels in turn, so a model that always picks one label
scores a known accuracy (e.g. RuCoLA 0.5, ruMMLU 1/3 over its three records per subject).
"""

from __future__ import annotations

import json
import os

SYSTEM = {"role": "system", "content": "Реши задачу."}
# Darumeru's choice tasks and their answer labels.
CHOICES = {
    "parus": ["1", "2"],
    "rcb": ["1", "2", "3"],
    "rummlu": ["A", "B", "C", "D"],
    "ruopenbookqa": ["A", "B", "C", "D"],
    "ruworldtree": ["A", "B", "C", "D"],
    "rwsd": ["Да", "Нет"],
}
COPY_TASKS = ("cp_sent_ru", "cp_sent_en", "cp_para_ru", "cp_para_en")
MMLU_SUBJECTS = ("anatomy", "virology")


def _jsonl(path: str, rows) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def choice_record(i: int, answer: str, choices_text: str, with_answer: bool) -> dict:
  bot = "Ответ:" + (f" {answer}" if with_answer else "")
  return {
      "messages": [
          SYSTEM,
          {"role": "user", "content": "Вопрос {n}: {question}\n" + choices_text},
          {"role": "bot", "content": bot},
      ],
      "inputs": {"n": i, "question": f"что верно {i}?", "choice1": "это", "choice2": "то"},
      "outputs": answer,
      "meta": {"id": i},
  }


def generation_record(i: int, outputs, text: str | None = None, meta: dict | None = None) -> dict:
  inputs = {"text": text or f"Текст номер {i}."}
  return {
      "messages": [SYSTEM, {"role": "user", "content": "Перепиши: {text}"}],
      "inputs": inputs,
      "outputs": outputs if outputs is not None else inputs["text"],
      "meta": {"id": i, **(meta or {})},
  }


def write_darumeru_files(root: str) -> str:
  """Writes every task's files under `root` (the suite's `data_dir`); returns `root`."""
  # pylint: disable=import-outside-toplevel
  import pyarrow as pa
  import pyarrow.parquet as pq

  data = os.path.join(root, "darumeru", "data")
  for task, labels in CHOICES.items():
    text = "1. {choice1}\n2. {choice2}"
    for split, answered in (("test", False), ("prompt", True)):
      _jsonl(
          os.path.join(data, task, f"{split}.jsonl"),
          [choice_record(i, labels[i % len(labels)], text, answered) for i in range(6)],
      )
  multiq = [
      {**generation_record(i, None), "outputs": [{"segment": "Москва"}, {"segment": "в Москве"}]}
      for i in range(3)
  ]
  use = [
      generation_record(0, "2,4", meta={"type": "multiple_choice", "id_task": "1", "variant": 1}),
      generation_record(1, "3,1,2", meta={"type": "matching", "id_task": "26", "variant": 1}),
      generation_record(2, "мама,мать", meta={"type": "text", "id_task": "7", "variant": 2}),
  ]
  copies = [generation_record(i, "", text=f"Строка {i} для копии.") for i in range(3)]
  for task, rows in (("multiq", multiq), ("use", use), *((t, copies) for t in COPY_TASKS)):
    _jsonl(os.path.join(data, task, "test.jsonl"), rows)
    _jsonl(os.path.join(data, task, "prompt.jsonl"), rows)
  os.makedirs(os.path.join(root, "rucola"), exist_ok=True)
  header = "id,sentence,acceptable,error_type,detailed_source\n"
  for name in ("in_domain_dev", "in_domain_train"):
    with open(os.path.join(root, "rucola", f"{name}.csv"), "w", encoding="utf-8") as f:
      f.write(header + "".join(f'{i},"Предложение {i}.",{i % 2},0,x\n' for i in range(6)))
  for subject in MMLU_SUBJECTS:
    folder = os.path.join(root, "mmlu_ru", subject)
    os.makedirs(folder, exist_ok=True)
    rows = [
        {
            "question_ru": f"Вопрос {subject} {i}?",
            "choices_ru": ["а", "б", "в", "г"],
            "question_en": f"Question {subject} {i}?",
            "choices_en": ["a", "b", "c", "d"],
            "answer": i % 4,
        }
        for i in range(3)
    ]
    for split in ("dev", "test"):
      pq.write_table(
          pa.Table.from_pylist(rows), os.path.join(folder, f"{split}-00000-of-00001.parquet")
      )
  news = [
      {"title": f"Новость {i}", "text": f"Сегодня случилось {i}.", "summary": f"Итог {i}."}
      for i in range(3)
  ]
  _jsonl(os.path.join(root, "gazeta", "gazeta_test.jsonl"), news)
  _jsonl(os.path.join(root, "gazeta", "gazeta_val.jsonl"), news)
  return root
