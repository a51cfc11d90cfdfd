"""Experiment arguments and overrides: typed values, bare words, one-line errors."""

import ml_collections
import pytest

from langshift import config_lib

SPEC = dict(
    model=("llama3", "mistral", "smollm2"),
    size=("full", "tiny"),
    steps=10,
    lr=1e-3,
    fast=False,
    name="",
)


def test_parse_arg_types_values_like_their_defaults():
  arg = config_lib.parse_arg("model=smollm2,steps=7,lr=0.5,fast=true,name=x", **SPEC)
  assert arg.to_dict() == dict(model="smollm2", size="full", steps=7, lr=0.5, fast=True, name="x")
  assert config_lib.parse_arg(None, **SPEC).to_dict() == dict(
      model="llama3", size="full", steps=10, lr=1e-3, fast=False, name=""
  )


def test_bare_words_set_flags_and_the_one_choice_that_lists_them():
  arg = config_lib.parse_arg("tiny,mistral,fast", **SPEC)
  assert (arg.size, arg.model, arg.fast) == ("tiny", "mistral", True)


@pytest.mark.parametrize(
    "text,match",
    [
        ("modle=smollm2", r"config argument 'modle' is unknown; expected one of"),
        ("model=gpt2", r"config argument model='gpt2'; expected one of \('llama3'"),
        ("huge", r"'huge' is not a flag or the value of exactly one key"),
        ("fast=maybe", r"fast='maybe': expected true or false"),
    ],
)
def test_bad_arguments_are_one_line_errors_naming_them(text, match):
  with pytest.raises(ValueError, match=match):
    config_lib.parse_arg(text, **SPEC)


def test_all_args_varies_each_choice_and_flag_once():
  assert config_lib.all_args(**SPEC) == [
      "",
      "model=mistral",
      "model=smollm2",
      "size=tiny",
      "fast=true",
  ]


def test_apply_overrides_copies_and_refuses_unknown_keys():
  config = ml_collections.ConfigDict(dict(optimizer=dict(learning_rate=1e-4), seed=0))
  config.lock()
  out = config_lib.apply_overrides(config, {"optimizer.learning_rate": 1e-5, "seed": 3})
  assert (out.optimizer.learning_rate, out.seed) == (1e-5, 3)
  assert config.optimizer.learning_rate == 1e-4  # the original is untouched
  with pytest.raises(KeyError, match="config has no key 'optimizer.lr'"):
    config_lib.apply_overrides(config, {"optimizer.lr": 1e-5})
  with pytest.raises(KeyError, match="config has no key 'optimiser'"):
    config_lib.apply_overrides(config, {"optimiser.learning_rate": 1e-5})


def test_select_flattens_prefixes_and_reads_missing_keys_as_none():
  config = ml_collections.ConfigDict(dict(train=dict(steps=3, seq_len=(1, 2)), seed=0))
  assert config_lib.select(config, ["train", "seed", "lep.base"]) == {
      "train.steps": 3,
      "train.seq_len": [1, 2],
      "seed": 0,
      "lep.base": None,
  }
