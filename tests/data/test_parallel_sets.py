"""Parallel instruction sets: loaders for the published layouts, the same-ids check, the on-disk
layout the pinch recipe reads, and the offline set built from aligned handbook pages."""

import gzip
import json
import os

import pytest

from langshift.data import handbook_parallel, parallel_sets


def _jsonl(path, records, gz=False):
  opener = gzip.open if gz else open
  with opener(path, "wt", encoding="utf-8") as f:
    for r in records:
      f.write(json.dumps(r, ensure_ascii=False) + "\n")
  return str(path)


def test_lima_first_turns_get_stable_ids(tmp_path):
  path = _jsonl(
      tmp_path / "train.jsonl",
      [
          {
              "conversations": ["How do I boil an egg?", "Put it in boiling water."],
              "source": "wiki",
          },
          {"conversations": ["Hi", "Hello!", "More?", "No."], "source": "nlp"},
      ],
  )
  examples = parallel_sets.load_lima(path)
  assert [e["id"] for e in examples] == ["lima-0000", "lima-0001"]
  assert examples[1]["messages"] == parallel_sets.pair_messages("Hi", "Hello!")
  bad = _jsonl(tmp_path / "bad.jsonl", [{"conversations": ["only an instruction"]}])
  with pytest.raises(ValueError, match=r"bad\.jsonl:1: 'conversations' needs an instruction"):
    parallel_sets.load_lima(bad)


def test_oasst_first_turns_take_the_best_ranked_reply_in_both_layouts(tmp_path):
  flat = _jsonl(
      tmp_path / "messages.jsonl.gz",
      [
          {"message_id": "p1", "parent_id": None, "role": "prompter", "text": "Q1", "lang": "en"},
          {"message_id": "a1", "parent_id": "p1", "role": "assistant", "text": "worse", "rank": 1},
          {"message_id": "a2", "parent_id": "p1", "role": "assistant", "text": "best", "rank": 0},
          {"message_id": "a3", "parent_id": "a2", "role": "prompter", "text": "follow-up"},
          {
              "message_id": "p2",
              "parent_id": None,
              "role": "prompter",
              "text": "Frage",
              "lang": "de",
          },
          {
              "message_id": "a4",
              "parent_id": "p2",
              "role": "assistant",
              "text": "Antwort",
              "rank": 0,
          },
          {
              "message_id": "p3",
              "parent_id": None,
              "role": "prompter",
              "text": "no reply",
              "lang": "en",
          },
      ],
      gz=True,
  )
  examples = parallel_sets.load_oasst_first_turns(flat)
  assert examples == [
      {"id": "oasst-p1", "lang": "en", "messages": parallel_sets.pair_messages("Q1", "best")}
  ]
  trees = _jsonl(
      tmp_path / "trees.jsonl",
      [
          {
              "prompt": {
                  "message_id": "p1",
                  "role": "prompter",
                  "text": "Q1",
                  "lang": "en",
                  "replies": [
                      {"message_id": "a1", "role": "assistant", "text": "second", "rank": 1},
                      {
                          "message_id": "a2",
                          "role": "assistant",
                          "text": "first",
                          "rank": 0,
                          "deleted": False,
                      },
                  ],
              }
          }
      ],
  )
  assert parallel_sets.load_oasst_first_turns(trees)[0]["messages"][1]["content"] == "first"


def test_a_language_with_other_ids_is_refused_naming_it(tmp_path):
  en = [{"id": str(i), "lang": "en", "messages": []} for i in range(3)]
  ar = [{"id": str(i), "lang": "ar", "messages": []} for i in (0, 1, 5)]
  with pytest.raises(ValueError, match=r"ar: lacks id '2' \(1 missing, 1 extra vs en\)"):
    parallel_sets.check_parallel({"en": en, "ar": ar})
  with pytest.raises(ValueError, match="repeated example ids"):
    parallel_sets.check_parallel({"en": en + en[:1]})


def test_written_set_has_one_id_order_and_reads_back(tmp_path):
  en = [
      {"id": i, "lang": "en", "messages": parallel_sets.pair_messages(f"q{i}", f"a{i}")}
      for i in ("b", "a", "c")
  ]
  ru = list(reversed([{**e, "lang": "ru"} for e in en]))  # another order on input
  root = str(tmp_path / "set")
  manifest = parallel_sets.write_parallel_set(root, {"train": {"en": en, "ru": ru}}, source="t")
  assert manifest == {"source": "t", "splits": {"train": 3}, "languages": ["en", "ru"]}
  back = parallel_sets.read_parallel_set(root)
  assert [e["id"] for e in back["ru"]] == [e["id"] for e in back["en"]] == ["b", "a", "c"]
  assert all(e["lang"] == "ru" for e in back["ru"])
  translations = _jsonl(tmp_path / "ru.jsonl", [{"id": "a", "instruction": "в", "response": "о"}])
  assert parallel_sets.load_translations(translations, "ru")[0]["messages"][0]["content"] == "в"


def _page(paragraphs):
  body = "".join(f'<div class="para">{p}</div>' for p in paragraphs)
  return f"<html><body>{body}</body></html>"


def test_handbook_set_keeps_only_aligned_pages_in_their_languages(tmp_path):
  texts = {
      "en": [
          "The package manager installs software from the archive mirrors quickly.",
          "Configuration files live in the etc directory of the system tree.",
          "Services are started by the init system when the machine boots up.",
      ],
      "ru": [
          "Менеджер пакетов быстро устанавливает программы из зеркал архива.",
          "Файлы конфигурации находятся в каталоге etc дерева системы.",
          "Службы запускаются системой инициализации при загрузке машины.",
      ],
      "es": [
          "El gestor de paquetes instala programas desde las réplicas del archivo.",
          "Los archivos de configuración están en el directorio etc del sistema.",
          # untranslated: this id must be dropped for every language
          "Services are started by the init system when the machine boots up.",
      ],
  }
  html = tmp_path / debian_handbook_dir()
  for lang, folder in (("en", "en-US"), ("ru", "ru-RU"), ("es", "es-ES")):
    os.makedirs(html / folder)
    (html / folder / "basics.html").write_text(_page(texts[lang]), encoding="utf-8")
    # A page whose paragraph counts differ between languages is not aligned: skipped.
    extra = texts[lang][:2] if lang != "ru" else texts[lang][:1]
    (html / folder / "other.html").write_text(_page(extra), encoding="utf-8")
  splits, stats = handbook_parallel.build_examples(
      str(tmp_path), ("en", "ru", "es"), min_chars=20, heldout_every=100
  )
  # basics-001 is an "aligned pair" whose Spanish side is still English: dropped, counted.
  assert stats == {
      "aligned_pages": 1,
      "unaligned_pages": 1,
      "candidates": 2,
      "kept": 1,
      "dropped_short": 0,
      "dropped_code": 0,
      "dropped_other_language": {"es": {"en": 1}},
  }
  assert {lang: [e["id"] for e in ex] for lang, ex in splits["train"].items()} == {
      "en": ["basics-000"],
      "ru": ["basics-000"],
      "es": ["basics-000"],
  }
  ru = splits["train"]["ru"][0]["messages"]
  assert ru[0]["content"] == handbook_parallel.CONTINUE_REQUEST["ru"] + "\n\n" + texts["ru"][0]
  assert ru[1]["content"] == texts["ru"][1]
  with pytest.raises(ValueError, match=r"languages \['sw'\] are not in the handbook"):
    handbook_parallel.build_examples(str(tmp_path), ("en", "sw"))


def debian_handbook_dir():
  from langshift.data.debian_handbook import HTML_DIR

  return HTML_DIR
