"""Response evaluation: prompt-file checks, per-language match rates, reference NLL against a
direct forward pass, and the `response_eval` entry of the evals table."""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from eval_fixtures import ByteTokenizer, tiny_model

from langshift.evaluation.evaluators import EvalContext, build_evaluators, response_eval
from langshift.evaluation.response_eval import (
    evaluate_responses,
    load_response_prompts,
)
from langshift.generation.chat_render import chat_renderer
from langshift.models.llama import LlamaDecoder

EN = "Debian packages are installed with the apt program, which resolves dependencies itself."
ZH_HANT = "Debian 套件是透過 apt 程式安裝的，它會自動處理相依關係與設定檔案。"
ZH_HANS = "Debian 软件包是通过 apt 程序安装的，它会自动处理依赖关系与配置文件。"


def _write(path, rows):
  path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
  return str(path)


class CannedGenerator:
  """Answers prompt i with answers[i]; records what it was asked."""

  def __init__(self, answers):
    self.answers, self.calls = answers, []

  def chat(self, conversations, options):
    self.calls.append(("chat", conversations, options))
    return list(self.answers)

  def complete(self, prompts, options):
    self.calls.append(("complete", prompts, options))
    return list(self.answers)


def test_match_rate_per_language_tells_traditional_from_simplified(tmp_path):
  path = _write(
      tmp_path / "p.jsonl",
      [
          {"prompt": "介紹 apt", "language": "zh-TW"},
          {"prompt": "介紹 dpkg", "language": "zh-TW"},
          {"prompt": "Explain apt", "language": "en"},
          {"prompt": "Explain dpkg", "language": "en-US"},
      ],
  )
  prompts = load_response_prompts(path)
  assert [p.language for p in prompts] == ["zh-Hant", "zh-Hant", "en", "en"]
  # zh-TW answered once in Traditional, once in Simplified; English once in English, once not.
  generator = CannedGenerator([ZH_HANT, ZH_HANS, EN, ZH_HANT])
  records = []
  metrics = evaluate_responses(prompts, generator, records=records)
  assert metrics["eval/language_match/zh-Hant"] == 0.5
  assert metrics["eval/language_match/en"] == 0.5
  assert metrics["eval/language_match"] == 0.5
  assert [r["detected"] for r in records] == ["zh-Hant", "zh-Hans", "en", "zh-Hant"]
  kind, conversations, _ = generator.calls[0]
  assert kind == "chat" and conversations[2] == [{"role": "user", "content": "Explain apt"}]
  evaluate_responses(prompts, generator, chat=False)
  assert generator.calls[1][0] == "complete" and generator.calls[1][1][0] == "介紹 apt"


def test_max_examples_is_per_language(tmp_path):
  rows = [{"prompt": f"q{i}", "language": "en"} for i in range(5)]
  rows += [{"prompt": f"問{i}", "language": "zh-TW"} for i in range(3)]
  prompts = load_response_prompts(_write(tmp_path / "p.jsonl", rows), max_examples=2)
  assert [p.prompt for p in prompts] == ["q0", "q1", "問0", "問1"]


@pytest.mark.parametrize(
    "row, message",
    [
        ({"prompt": "x", "language": "qya-Quenya"}, r"p\.jsonl:2: language 'qya-Quenya' is not"),
        ({"prompt": "x"}, r"p\.jsonl:2: field 'language' missing"),
        ({"prompt": 3, "language": "en"}, r"p\.jsonl:2: field 'prompt' missing or not a string"),
        ({"prompt": "x", "language": "en", "reference": 1}, r"p\.jsonl:2: field 'reference' is"),
    ],
)
def test_bad_prompt_lines_are_one_line_errors(tmp_path, row, message):
  path = _write(tmp_path / "p.jsonl", [{"prompt": "ok", "language": "en"}, row])
  with pytest.raises(ValueError, match=message):
    load_response_prompts(path)


def _context(config, tokenizer, **fields):
  return EvalContext(
      model=None,
      model_config=config,
      tokenizer=tokenizer,
      mesh=None,
      rules=None,
      param_shardings=None,
      batch_sharding=None,
      seq_len=16,
      global_batch_size=2,
      **fields,
  )


def _table(**entries):
  table = ml_collections.ConfigDict()
  for name, entry in entries.items():
    table[name] = entry
  return table


def test_evaluator_reference_nll_matches_a_direct_forward_pass(tmp_path):
  rows = [
      {"prompt": "Say hi", "language": "en", "reference": "Hello there."},
      {"prompt": "說你好", "language": "zh-TW", "reference": "你好。"},
      {"prompt": "No reference", "language": "en"},
  ]
  path = _write(tmp_path / "p.jsonl", rows)
  config, params = tiny_model(seed=1)
  tokenizer = ByteTokenizer()
  entry = response_eval(prompts=path, max_new_tokens=4, batch_size=2, prefix="answers")
  (evaluator,) = build_evaluators(_table(r=entry), _context(config, tokenizer))
  metrics = evaluator(params)

  # Independent reference: one unpadded forward over rendered prompt + reference.
  render = chat_renderer(tokenizer)
  model = LlamaDecoder(config)
  totals = {}
  for row in rows[:2]:
    context = tokenizer.encode(render([{"role": "user", "content": row["prompt"]}]))
    target = tokenizer.encode(row["reference"])
    ids = np.asarray([context + target], np.int32)
    logits = model.apply({"params": params}, ids)
    logp = jax.nn.log_softmax(logits[0].astype(jnp.float32), axis=-1)
    nll = -sum(float(logp[len(context) - 1 + j, t]) for j, t in enumerate(target))
    lang = "en" if row["language"] == "en" else "zh-Hant"
    totals[lang] = (nll, len(target))
  for lang, (nll, n) in totals.items():
    np.testing.assert_allclose(metrics[f"answers/reference_nll/{lang}"], nll / n, rtol=1e-4)
  all_nll = sum(v[0] for v in totals.values()) / sum(v[1] for v in totals.values())
  np.testing.assert_allclose(metrics["answers/reference_nll"], all_nll, rtol=1e-4)
  # A random tiny model answers in no language: nothing matches, every prompt is counted.
  assert set(metrics) >= {"answers/language_match/en", "answers/language_match/zh-Hant"}
  assert 0.0 <= metrics["answers/language_match"] <= 1.0
  assert 0 < metrics["answers/response_chars"] <= 4  # 4 new byte tokens: at most 4 characters
  assert evaluator.headline({}, metrics).startswith("r response-language match")


def test_bad_entries_fail_at_build(tmp_path):
  config, _ = tiny_model()
  ctx = _context(config, ByteTokenizer())
  with pytest.raises(ValueError, match=r"config\.evals\.r\.prompts is empty"):
    build_evaluators(_table(r=response_eval()), ctx)
  with pytest.raises(FileNotFoundError, match=r"config\.evals\.r\.prompts: prompt file .* does"):
    build_evaluators(_table(r=response_eval(prompts=str(tmp_path / "none.jsonl"))), ctx)
  path = _write(tmp_path / "p.jsonl", [{"prompt": "x", "language": "en"}])
  no_template = ByteTokenizer()
  no_template.chat_template = None
  with pytest.raises(ValueError, match=r"config\.evals\.r\.chat=True: the tokenizer has no chat"):
    build_evaluators(_table(r=response_eval(prompts=path)), _context(config, no_template))


def test_evaluator_writes_the_answers_behind_its_metrics_per_step(tmp_path):
  rows = [
      {"prompt": "Say hi", "language": "en"},
      {"prompt": "說你好", "language": "zh-TW"},
      {"prompt": "Count to three", "language": "en"},
  ]
  path = _write(tmp_path / "p.jsonl", rows)
  config, params = tiny_model(seed=2)
  samples = tmp_path / "samples"
  entry = response_eval(prompts=path, max_new_tokens=5, batch_size=2, reference_nll=False)
  context = _context(config, ByteTokenizer(), samples_dir=str(samples))
  (evaluator,) = build_evaluators(_table(answers=entry), context)
  evaluator(params)  # outside the engine (no step): nothing written
  assert not samples.exists()
  metrics = evaluator(params, step=7)
  with open(samples / "answers-step7.jsonl", encoding="utf-8") as f:
    written = [json.loads(line) for line in f]
  assert [w["prompt"] for w in written] == [r["prompt"] for r in rows]
  assert [w["language"] for w in written] == ["en", "zh-Hant", "en"]
  # The metrics are those of the written answers.
  assert metrics["eval/language_match"] == pytest.approx(np.mean([w["match"] for w in written]))
  assert metrics["eval/response_chars"] == pytest.approx(
      np.mean([len(w["response"]) for w in written])
  )
  for w in written:
    assert w["match"] == (w["detected"] == w["language"])
