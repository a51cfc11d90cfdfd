import types

import jax.numpy as jnp
import numpy as np
import pytest

from langshift.generation.logits_processors import (
    DecodeContext,
    RepetitionPenalty,
    RuleBasedAdapter,
    apply_processors,
    hewitt_token_biases,
    rule_based_adapter,
)
from langshift.generation.sampling import top_k_filter, top_p_filter


def _ctx(seen, step=0):
  return DecodeContext(seen=jnp.asarray(seen), step=jnp.asarray(step, jnp.int32))


def test_repetition_penalty_divides_positive_and_multiplies_negative_seen_logits():
  logits = jnp.asarray([[2.0, -1.0, 3.0, -4.0]])
  out = RepetitionPenalty(2.0)(logits, _ctx([[True, True, False, False]]))
  np.testing.assert_allclose(out, [[1.0, -2.0, 3.0, -4.0]])


def _log_softmax(x):
  x = np.asarray(x, np.float64)
  return x - np.log(np.exp(x - x.max()).sum()) - x.max()


def test_rule_based_adapter_is_base_log_probs_plus_log_softmax_of_rules():
  base = np.asarray([[0.5, 1.0, -0.3, 2.0, 0.0]])
  seen = [[False, True, False, False, False]]
  adapter = RuleBasedAdapter(eos_token_ids=(4,), token_biases=((0, -4.0), (2, 1.0)))
  for step, ramp in ((0, 0.0), (125, 7.5), (250, 15.0), (400, 15.0)):
    rules = [-4.0, -1.5, 1.0, 0.0, ramp]  # uniform, diversity (token 1), EOS ramp (token 4)
    want = _log_softmax(base[0]) + _log_softmax(rules)
    got = adapter(jnp.asarray(base), _ctx(seen, step))
    np.testing.assert_allclose(np.asarray(got)[0], want, rtol=1e-5, atol=1e-5)


def test_rule_based_adapter_ablation_flags_switch_rules_off():
  base = jnp.asarray([[0.1, 0.2, 0.3]])
  off = RuleBasedAdapter(
      eos_token_ids=(2,),
      token_biases=((0, -4.0),),
      use_eos_rule=False,
      use_uniform_rule=False,
      use_diversity_rule=False,
  )
  got = off(base, _ctx([[True, False, False]], 300))
  # All rules off: r = 0, log softmax(r) is the constant -log V.
  np.testing.assert_allclose(got, _log_softmax(base[0])[None] - np.log(3), rtol=1e-6)


def test_hewitt_token_biases_keep_single_token_spellings_only():
  vocab = {"<": 5, " I": 6, "I": 7, "-": 8, "\n": 9, "##": 10}
  encode = lambda s: [vocab[s]] if s in vocab else [1, 2]
  biases = dict(hewitt_token_biases(encode, negative_bias=-3.0))
  assert biases == {5: -3.0, 6: -3.0, 7: -3.0, 8: 1.0, 9: 1.0, 10: 1.0}


def test_processors_compose_in_order():
  logits = jnp.asarray([[4.0, 1.0]])
  ctx = _ctx([[True, False]])
  out = apply_processors((RepetitionPenalty(2.0), RepetitionPenalty(2.0)), logits, ctx)
  np.testing.assert_allclose(out, [[1.0, 1.0]])


def test_top_k_and_top_p_filters_on_hand_values():
  logits = jnp.log(jnp.asarray([[0.5, 0.2, 0.25, 0.05]]))
  k2 = np.asarray(top_k_filter(logits, 2))
  assert np.isfinite(k2).tolist() == [[True, False, True, False]]
  # Nucleus 0.7: 0.5 then 0.25 reaches 0.75 >= 0.7, so two tokens survive.
  p = np.asarray(top_p_filter(logits, 0.7))
  assert np.isfinite(p).tolist() == [[True, False, True, False]]
  # p just above 0.95 needs all four tokens; a tiny p still keeps the top token.
  assert np.isfinite(np.asarray(top_p_filter(logits, 0.96))).all()
  assert np.isfinite(np.asarray(top_p_filter(logits, 0.01))).tolist() == [
      [True, False, False, False]
  ]


# Hewitt et al. 2024's ablations, each one rule off, against logits computed by hand: base
# log-probs plus the log-softmax of the rule scores that remain.
@pytest.mark.parametrize(
    "variant, rules",
    [
        # token:        0 ("I", -4)  1 (seen: -1.5)  2 ("-", +1)  3      4 (EOS: ramp 7.5 at 125)
        ("all", [-4.0, -1.5, 1.0, 0.0, 7.5]),
        ("no_eos", [-4.0, -1.5, 1.0, 0.0, 0.0]),
        ("no_uniform", [0.0, -1.5, 0.0, 0.0, 7.5]),
        ("no_diversity", [-4.0, 0.0, 1.0, 0.0, 7.5]),
    ],
)
def test_rule_adapter_ablations_on_hand_computed_logits(variant, rules):
  tokenizer = types.SimpleNamespace(
      eos_ids=(4,), path="toy", encode=lambda s: {"I": [0], "-": [2]}.get(s, [1, 1])
  )
  adapter = rule_based_adapter(tokenizer, variant)
  base = np.asarray([0.5, 1.0, -0.3, 2.0, 0.0])
  want = _log_softmax(base) + _log_softmax(rules)
  got = adapter(jnp.asarray(base[None]), _ctx([[False, True, False, False, False]], 125))
  np.testing.assert_allclose(np.asarray(got)[0], want, rtol=1e-5, atol=1e-5)


def test_rule_adapter_variant_errors_name_the_value():
  tokenizer = types.SimpleNamespace(eos_ids=(4,), path="toy", encode=lambda s: [1, 1])
  with pytest.raises(ValueError, match=r"rule adapter 'no_rules'; expected one of"):
    rule_based_adapter(tokenizer, "no_rules")
