import dataclasses
import json
import math

import pytest
from eval_fixtures import ByteTokenizer, tiny_model

from langshift.evaluation.harness import run_eval_suite
from langshift.evaluation.tasks import Suite, load_suite, resolve_suite_path


class ScriptedScorer:
  """Always prefers label "A"; NLL of a text = 1 nat per character."""

  def encode(self, text):
    return [ord(c) for c in text] if len(text) == 1 else [ord(c) for c in text.strip()] + [0]

  def render_chat(self, messages):
    return messages[-1]["content"]

  def next_token_logprobs(self, prompts, chat=False):
    import numpy as np

    row = np.full(256, -5.0)
    row[ord("A")] = -0.1
    return np.tile(row, (len(prompts), 1))

  def token_nll(self, texts):
    return [(float(len(t)), len(t)) for t in texts]


class EchoGenerator:
  """Copies the text after 'Text: ' (a perfect copier) and answers in Russian."""

  def complete(self, prompts, options):
    return [" " + p.rsplit("Text: ", 1)[-1].split("\nCopy:")[0] for p in prompts]

  def chat(self, conversations, options):
    return ["Это ответ на русском языке, а не на каком-либо другом." for _ in conversations]


def _write(path, rows):
  path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture
def suite_path(tmp_path):
  _write(tmp_path / "mc.jsonl", [{"prompt": "Q?", "outputs": g} for g in "AABB"])
  _write(
      tmp_path / "copy.jsonl",
      [
          {"instruction": "Copy.\nText: {text}\nCopy:", "inputs": {"text": t}, "outputs": t}
          for t in ("один два", "три")
      ],
  )
  _write(
      tmp_path / "align.jsonl",
      [
          {"prompt": "Привет, как дела у тебя сегодня?", "lang": "ru"},
          {"prompt": "你今天過得怎麼樣？", "lang": "zh-TW"},
      ],
  )
  _write(tmp_path / "ppl.jsonl", [{"text": "abcd", "lang": "ru"}, {"text": "ab", "lang": "en"}])
  suite = {
      "name": "s",
      "tasks": [
          {"name": "mc", "type": "choice", "path": "mc.jsonl", "choices": ["A", "B"]},
          {
              "name": "copy",
              "type": "generation",
              "path": "copy.jsonl",
              "metric": "length_ratio",
              "num_fewshot": 1,
              "stop": ["\n"],
          },
          {
              "name": "align",
              "type": "generation",
              "path": "align.jsonl",
              "metric": "language_alignment",
          },
          {"name": "ppl", "type": "perplexity", "path": "ppl.jsonl", "in_average": False},
      ],
  }
  (tmp_path / "suite.json").write_text(json.dumps(suite))
  return str(tmp_path / "suite.json")


def test_suite_metrics_names_and_micro_average(suite_path):
  base = run_eval_suite(suite_path, scorer=ScriptedScorer(), generator=EchoGenerator())
  assert base["eval/mc/accuracy"] == 0.5
  assert base["eval/copy/length_ratio"] == 1.0  # base protocol: k-shot completion, copied exactly
  # Perplexity: 1 nat per token overall and per language; never part of the average.
  assert base["eval/ppl/ppl"] == pytest.approx(math.e)
  assert base["eval/ppl/ppl_ru"] == pytest.approx(math.e)
  instruct = run_eval_suite(
      suite_path, scorer=ScriptedScorer(), generator=EchoGenerator(), chat=True
  )
  assert instruct["eval/align/language_alignment"] == 0.5  # the zh-TW prompt got Russian
  # Base protocol: the echo continues each prompt in the prompt's own language -> alignment 1.
  assert base["eval/align/language_alignment"] == 1.0
  assert base["eval/micro_avg"] == pytest.approx((0.5 + 1.0 + 1.0) / 3)
  # Only a generator (e.g. an HTTP server): choice and perplexity tasks are skipped.
  http_only = run_eval_suite(suite_path, generator=EchoGenerator(), chat=True)
  assert sorted(http_only) == [
      "eval/align/language_alignment",
      "eval/copy/length_ratio",
      "eval/micro_avg",
  ]


def test_builtin_suite_runs_end_to_end_on_a_tiny_model():
  suite = load_suite(resolve_suite_path("mini_darumeru"), max_examples=2)
  assert len(suite.tasks) >= 20 and {t.type for t in suite.tasks} == {
      "choice",
      "generation",
      "perplexity",
  }
  # One task of each kind, short generations: this checks wiring, not the model. Short prompts
  # keep the byte-level toy tokenizer's sequences (and CPU time) small.
  keep = ("language_id", "copy_sentence_ru", "lang_alignment_ar", "ppl_handbook")
  suite = Suite(
      suite.name,
      tuple(
          dataclasses.replace(t, max_new_tokens=4, num_fewshot=0)
          for t in suite.tasks
          if t.name in keep
      ),
  )
  config, params = tiny_model()
  # Instruct protocol (the base one is covered above and by the CLI test).
  out = run_eval_suite(
      suite, config=config, params=params, tokenizer=ByteTokenizer(), chat=True, batch_size=2
  )
  assert 0.0 <= out["eval/language_id/accuracy"] <= 1.0
  assert 0.0 <= out["eval/copy_sentence_ru/length_ratio"] <= 1.0
  assert out["eval/lang_alignment_ar/language_alignment"] == 0.0  # random bytes are not Arabic
  assert 100 < out["eval/ppl_handbook/ppl_ru"] < 1000  # near-uniform over 259 ids
  assert "eval/micro_avg" in out
