"""Logits processors: pure functions (logits [B, V], DecodeContext) -> logits [B, V].

Each processor is a frozen dataclass holding its settings, so a tuple of them is hashable and can
be a static argument of the jit-compiled decode loop. They run in fp32 after the model and before
sampling, in the order given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp


class DecodeContext(NamedTuple):
  """What a processor may look at besides the logits."""

  seen: jax.Array  # bool [B, V]: token occurs in the prompt or in the response so far.
  # int [B] (or a scalar for every row): index of the response token being chosen (0 = first).
  # Per row, because continuous batching runs rows at different points of their responses.
  step: jax.Array


LogitsProcessor = Callable[[jax.Array, DecodeContext], jax.Array]


def apply_processors(
    processors: Sequence[LogitsProcessor], logits: jax.Array, context: DecodeContext
) -> jax.Array:
  logits = logits.astype(jnp.float32)
  for processor in processors:
    logits = processor(logits, context)
  return logits


@dataclasses.dataclass(frozen=True)
class RepetitionPenalty:
  """CTRL's repetition penalty (Keskar et al. 2019) as `transformers` applies it: the logit of every
  token already seen is divided by `penalty` when positive and multiplied by it when negative."""

  penalty: float = 1.2

  def __call__(self, logits, context):
    penalised = jnp.where(logits > 0, logits / self.penalty, logits * self.penalty)
    return jnp.where(context.seen, penalised, logits)


@dataclasses.dataclass(frozen=True)
class RuleBasedAdapter:
  """Rule-based instruction-following adapter for a base model (Hewitt et al. 2024, "Instruction
  Following without Instruction Tuning", arXiv:2409.14254).

  A product of experts: log p(w|x) ∝ log p_base(w|x) + log softmax(r(·, x))_w, where r adds
    (1) an EOS ramp: the end-of-turn score grows linearly with the response position, reaching
        `eos_max` at position `eos_ramp_length` and staying there;
    (2) uniform biases on a few tokens (`token_biases`, built by `hewitt_token_biases`);
    (3) diversity: `diversity_penalty` on every token already seen in the conversation.
  langshift gives all negative uniform biases one configurable size (`negative_bias` of
  `hewitt_token_biases`, default -4); the authors' released code (github.com/john-hewitt/
  implicit-ins) sets per-token values between -3 and -6. Flags switch each rule off for the
  paper's ablations.
  """

  eos_token_ids: tuple[int, ...]
  token_biases: tuple[tuple[int, float], ...] = ()
  eos_max: float = 15.0
  eos_ramp_length: int = 250
  diversity_penalty: float = -1.5
  use_eos_rule: bool = True
  use_uniform_rule: bool = True
  use_diversity_rule: bool = True

  def rule_scores(self, batch: int, vocab: int, context: DecodeContext) -> jax.Array:
    r = jnp.zeros((batch, vocab), jnp.float32)
    if self.use_uniform_rule and self.token_biases:
      ids = jnp.asarray([i for i, _ in self.token_biases], jnp.int32)
      bias = jnp.asarray([b for _, b in self.token_biases], jnp.float32)
      r = r.at[:, ids].add(bias)
    if self.use_diversity_rule:
      r = r + jnp.where(context.seen, self.diversity_penalty, 0.0)
    if self.use_eos_rule:
      step = jnp.reshape(context.step, (-1, 1)).astype(jnp.float32)  # [B or 1, 1]
      ramp = self.eos_max * jnp.minimum(step / self.eos_ramp_length, 1.0)
      eos = jnp.asarray(self.eos_token_ids, jnp.int32)
      # The EOS ramp replaces any other rule score on the end-of-turn tokens.
      r = r.at[:, eos].set(jnp.broadcast_to(ramp, (batch, eos.shape[0])))
    return r

  def __call__(self, logits, context):
    r = self.rule_scores(logits.shape[0], logits.shape[1], context)
    return jax.nn.log_softmax(logits, axis=-1) + jax.nn.log_softmax(r, axis=-1)


# The uniform rule of Hewitt et al. 2024 (arXiv:2409.14254): discourage tokens that start chatty
# or template-like text and encourage list/markdown structure. The signs follow the paper; the
# size of the negative biases is a parameter here (`negative_bias`, default -4).
HEWITT_NEGATIVE_STRINGS = ("<", "|", "I", "We", "What", "should")
HEWITT_POSITIVE_STRINGS = ("-", "*", "#", "##", "\n", "!")


def hewitt_token_biases(
    encode: Callable[[str], Sequence[int]], negative_bias: float = -4.0, positive_bias: float = 1.0
) -> tuple[tuple[int, float], ...]:
  """Token-id biases for `RuleBasedAdapter` from a tokenizer's `encode` (no special tokens).

  Each string and its space-prefixed form (how BPE vocabularies spell a word after a space) gets
  the bias when it encodes to a single token; multi-token spellings are skipped.
  """
  biases: dict[int, float] = {}
  for strings, bias in (
      (HEWITT_NEGATIVE_STRINGS, negative_bias),
      (HEWITT_POSITIVE_STRINGS, positive_bias),
  ):
    for s in strings:
      for surface in (s, " " + s):
        ids = list(encode(surface))
        if len(ids) == 1:
          biases[int(ids[0])] = bias
  return tuple(sorted(biases.items()))


# Named settings of the rule-based adapter: the full adapter and the ablations of Hewitt et al.
# 2024 (each without one rule), for the generation CLI (`run_job --rule_adapter`) and
# `response_eval(rule_adapter=...)`.
RULE_ADAPTER_VARIANTS = {
    "all": {},
    "no_eos": {"use_eos_rule": False},
    "no_uniform": {"use_uniform_rule": False},
    "no_diversity": {"use_diversity_rule": False},
}


def rule_based_adapter(tokenizer, variant: str = "all", negative_bias: float = -4.0):
  """`RuleBasedAdapter` for a langshift tokenizer: its end-of-turn ids for the EOS ramp and
  `hewitt_token_biases` of its vocabulary; `variant` names an ablation (RULE_ADAPTER_VARIANTS)."""
  if variant not in RULE_ADAPTER_VARIANTS:
    raise ValueError(f"rule adapter {variant!r}; expected one of {tuple(RULE_ADAPTER_VARIANTS)}")
  if not tokenizer.eos_ids:
    raise ValueError(f"rule adapter: tokenizer {tokenizer.path} has no end-of-turn token")
  return RuleBasedAdapter(
      eos_token_ids=tuple(int(i) for i in tokenizer.eos_ids),
      token_biases=hewitt_token_biases(tokenizer.encode, negative_bias=negative_bias),
      **RULE_ADAPTER_VARIANTS[variant],
  )
