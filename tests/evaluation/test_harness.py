import dataclasses
import json
import math

import pytest
from eval_fixtures import ByteTokenizer, tiny_model

from langshift.evaluation.harness import run_eval_suite
from langshift.evaluation.scoring import Scored
from langshift.evaluation.tasks import Suite, load_suite, resolve_suite_path


class ScriptedScorer:
  """Always prefers the answer "A"; log-likelihood of a text = -1 nat per character."""

  settings = {"bos": 0.0}

  def render_chat(self, messages):
    return messages[-1]["content"]

  def encode_pair(self, context, continuation):
    return list(context.encode()), list(continuation.encode())

  def loglikelihood_tokens(self, encoded):
    return [Scored(-0.1 if bytes(c).strip() == b"A" else -5.0, len(c), False) for _, c in encoded]

  def loglikelihood_rolling(self, texts):
    return [Scored(-float(len(t)), len(t), False) for t in texts]


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
  # Perplexity: 1 nat per token overall and per language; never part of the average. Per byte:
  # "abcd" and "ab" are 6 bytes, 6 nats; per word: 2 words.
  assert base["eval/ppl/ppl"] == pytest.approx(math.e)
  assert base["eval/ppl/ppl_ru"] == pytest.approx(math.e)
  assert base["eval/ppl/bits_per_byte"] == pytest.approx(1 / math.log(2))
  assert base["eval/ppl/bits_per_byte_en"] == pytest.approx(1 / math.log(2))
  assert base["eval/ppl/word_perplexity"] == pytest.approx(math.exp(3))
  # The settings the numbers depend on are written with them.
  assert base["eval/settings/bos"] == 0.0 and base["eval/settings/chat"] == 0.0
  assert base["eval/settings/num_fewshot"] == -1.0
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
      "eval/settings/chat",
      "eval/settings/num_fewshot",
  ]


def test_renamed_and_data_dir_suites_are_one_line_errors():
  with pytest.raises(FileNotFoundError, match="'mini_darumeru' is now 'handbook_mini'"):
    resolve_suite_path("mini_darumeru")
  with pytest.raises(
      ValueError, match="suite 'darumeru' reads files you supply: give their folder"
  ):
    load_suite(resolve_suite_path("darumeru"))


def test_builtin_suite_runs_end_to_end_on_a_tiny_model():
  suite = load_suite(resolve_suite_path("handbook_mini"), max_examples=2)
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
