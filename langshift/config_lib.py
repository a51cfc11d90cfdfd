"""Helpers every experiment file shares: variant arguments, dotted overrides, flat views.

    # experiments/lep_ru.py
    ARGS = dict(model=("llama3", "mistral", "smollm2"), size=("full", "cpu", "tiny"))
    def get_config(arg=None):
      arg = config_lib.parse_arg(arg, **ARGS)   # ":model=smollm2,size=tiny" or ":tiny"
      ...

`parse_arg` follows big_vision's `configs/common.py::parse_arg`: `key=value` pairs separated by
",", each value converted to the type of its default; a bare word sets a boolean key to True,
or is the value of the one choice key that lists it (so `:tiny` means `size=tiny`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from typing import Any

import ml_collections


def arg_choices(spec_value) -> tuple | None:
  """The allowed values of a choice key (a tuple spec), else None."""
  return tuple(spec_value) if isinstance(spec_value, (tuple, list)) else None


def arg_defaults(**spec) -> dict[str, Any]:
  """Default of each key: the first choice of a tuple spec, else the value itself."""
  return {k: (arg_choices(v)[0] if arg_choices(v) else v) for k, v in spec.items()}


def _convert(key: str, text: str, default):
  if isinstance(default, bool):
    if text.lower() not in ("true", "false", "1", "0"):
      raise ValueError(f"config argument {key}={text!r}: expected true or false")
    return text.lower() in ("true", "1")
  if isinstance(default, int):
    return int(text)
  if isinstance(default, float):
    return float(text)
  return text


def parse_arg(arg: str | None, **spec) -> ml_collections.ConfigDict:
  """Parses an experiment's `--config=file.py:<arg>` into a ConfigDict of typed values.

  `spec` maps each key to its default; a tuple of strings is a choice (its first item is the
  default). Unknown keys, values outside a choice and bare words that match nothing are one-line
  errors naming them.
  """
  values = arg_defaults(**spec)
  for item in filter(None, (s.strip() for s in (arg or "").split(","))):
    key, eq, text = item.partition("=")
    if not eq:
      key, text = _bare_word(item, spec)
    if key not in spec:
      raise ValueError(f"config argument {key!r} is unknown; expected one of {sorted(spec)}")
    choices = arg_choices(spec[key])
    if choices is not None:
      if text not in choices:
        raise ValueError(f"config argument {key}={text!r}; expected one of {choices}")
      values[key] = text
    else:
      values[key] = _convert(key, text, spec[key])
  return ml_collections.ConfigDict(values)


def _bare_word(word: str, spec) -> tuple[str, str]:
  if isinstance(spec.get(word), bool):
    return word, "true"
  owners = [k for k, v in spec.items() if word in (arg_choices(v) or ())]
  if len(owners) != 1:
    raise ValueError(
        f"config argument {word!r} is not a flag or the value of exactly one key "
        f"of {sorted(spec)}; write key={word}"
    )
  return owners[0], word


def all_args(**spec) -> list[str]:
  """Every variant argument string of a spec (each choice key and flag varied one at a time
  from the defaults), for tests that load every variant."""
  args = [""]
  for key, value in spec.items():
    choices = arg_choices(value)
    if choices is not None:
      args += [f"{key}={c}" for c in choices[1:]]
    elif isinstance(value, bool):
      args.append(f"{key}={str(not value).lower()}")
  return args


def apply_overrides(
    config: ml_collections.ConfigDict, overrides: Mapping[str, Any]
) -> ml_collections.ConfigDict:
  """A copy of `config` with dotted keys set (`{"optimizer.learning_rate": 1e-5}`).

  A key the config does not have is an error naming it, as on the command line.
  """
  config = copy.deepcopy(config)  # keeps field types and placeholders, unlike to_dict()
  for dotted, value in overrides.items():
    *parents, leaf = dotted.split(".")
    node = config
    for i, name in enumerate(parents):
      if name not in node:
        raise KeyError(f"override {dotted!r}: config has no key {'.'.join(parents[:i + 1])!r}")
      node = node[name]
    if leaf not in node:
      raise KeyError(f"override {dotted!r}: config has no key {dotted!r}")
    node[leaf] = tuple(value) if isinstance(value, list) else value
  return config


def flatten(config, prefix: str = "") -> dict[str, Any]:
  """{"optimizer.learning_rate": 1e-4, ...} for every leaf; JSON-plain values (tuples -> lists)."""
  if isinstance(config, ml_collections.ConfigDict):
    config = config.to_dict()
  out: dict[str, Any] = {}
  for key, value in config.items():
    name = f"{prefix}{key}"
    if isinstance(value, Mapping):
      out.update(flatten(value, name + "."))
    else:
      out[name] = json.loads(json.dumps(value, default=str))
  return out


def select(config, keys: Iterable[str]) -> dict[str, Any]:
  """The flat values of `config` under each dotted key or prefix in `keys` (a missing key reads
  as None, so that adding it later is a change)."""
  flat = flatten(config)
  out: dict[str, Any] = {}
  for key in keys:
    under = {k: v for k, v in flat.items() if k == key or k.startswith(key + ".")}
    out.update(under or {key: None})
  return out


def check_fields(given: Mapping[str, Any], known: Mapping[str, Any], where: str) -> None:
  """A one-line error naming the fields of `given` that `known` (a schema) does not have."""
  unknown = sorted(set(given) - set(known))
  if unknown:
    raise ValueError(f"unknown field(s) {unknown} in {where}; known fields: {sorted(known)}")
