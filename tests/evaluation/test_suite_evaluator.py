"""The training-time suite evaluator's settings: BOS, demonstrations, data folder."""

import json

import pytest
from eval_fixtures import ByteTokenizer, tiny_model

from langshift.evaluation.evaluators import EvalContext, build_evaluators, suite_eval


def _context(config=None):
  return EvalContext(
      model=None,
      model_config=config,
      tokenizer=ByteTokenizer(),
      mesh=None,
      rules=None,
      param_shardings=None,
      batch_sharding=None,
      seq_len=16,
      global_batch_size=2,
  )


def _evals(**entries):
  import ml_collections

  table = ml_collections.ConfigDict()
  for name, entry in entries.items():
    table[name] = entry
  return table


def test_bad_settings_are_one_line_errors_at_build():
  with pytest.raises(ValueError, match=r"config\.evals\.s\.bos: bos='maybe'; expected one of"):
    build_evaluators(_evals(s=suite_eval(suite="handbook_mini", bos="maybe")), _context())
  with pytest.raises(ValueError, match=r"config\.evals\.s\.num_fewshot=-2; expected >= -1"):
    build_evaluators(_evals(s=suite_eval(suite="handbook_mini", num_fewshot=-2)), _context())
  with pytest.raises(
      ValueError, match=r"config\.evals\.s\.suite='darumeru': suite 'darumeru' reads"
  ):
    build_evaluators(_evals(s=suite_eval(suite="darumeru")), _context())


def test_bos_and_demonstrations_reach_the_scorer(tmp_path):
  rows = [{"prompt": f"Q{i}:", "choices": ["ab", "cd"], "outputs": "ab"} for i in range(3)]
  (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  suite = {"name": "s", "tasks": [{"name": "t", "type": "choice", "path": "t.jsonl"}]}
  (tmp_path / "suite.json").write_text(json.dumps(suite))
  config, params = tiny_model()
  entry = suite_eval(suite=str(tmp_path / "suite.json"), bos="true", num_fewshot=2, batch_size=2)
  (evaluator,) = build_evaluators(_evals(s=entry), _context(config))
  metrics = evaluator(params)
  assert metrics["eval/settings/bos"] == 1.0 and metrics["eval/settings/num_fewshot"] == 2.0
  assert set(metrics) >= {"eval/t/accuracy", "eval/t/acc_norm", "eval/micro_avg"}
