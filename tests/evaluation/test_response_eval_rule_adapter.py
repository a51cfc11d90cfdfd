"""response_eval builds the rule-based adapter (or ablation) its entry names for its generator
(the CLI test checks decoding through it); a bad name is a one-line error naming the entry."""

import json

import ml_collections
import pytest
from eval_fixtures import ByteTokenizer, tiny_model

from langshift.evaluation.evaluators import EvalContext, build_evaluators, response_eval
from langshift.generation.logits_processors import RuleBasedAdapter


def _context(config, tokenizer):
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
  )


def test_response_eval_builds_the_named_rule_adapter(tmp_path):
  path = tmp_path / "p.jsonl"
  path.write_text(json.dumps({"prompt": "Say hi", "language": "en"}) + "\n")
  config, _ = tiny_model()
  table = ml_collections.ConfigDict()
  table.r = response_eval(prompts=str(path), rule_adapter="no_diversity")
  (evaluator,) = build_evaluators(table, _context(config, ByteTokenizer()))
  (adapter,) = evaluator._processors  # pylint: disable=protected-access
  assert isinstance(adapter, RuleBasedAdapter)
  assert not adapter.use_diversity_rule and adapter.use_eos_rule and adapter.use_uniform_rule
  table.r.rule_adapter = "no_rules"
  with pytest.raises(ValueError, match=r"config\.evals\.r\.rule_adapter: rule adapter 'no_rules'"):
    build_evaluators(table, _context(config, ByteTokenizer()))
