"""What a rehearsal may change in the published setting: declared sizes, the paths it fills and
the endpoints of its server roles, nothing else.

An experiment file declares its rehearsal sizes as plain data, `REHEARSAL_SIZES = {"train.steps":
2, ...}`: numbers only, each at a key whose last part names a size (`SIZE_FIELDS`: counts of steps,
examples, documents, rows, tokens per row, devices...). Behavioural settings (dtypes, remat,
schedules, learning rates, the roles' token budgets, chat templates, trainable sets, packing,
propagation methods...) are not sizes and stay as published. The one exception are quality
filters of model outputs, which a random model cannot pass (`STANDIN_FIELDS`); an experiment
lists those it switches off in `REHEARSAL_STANDINS`. `differences` then refuses any key where the
rehearsal's config differs from the published one and that is none of these.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from langshift import config_lib

# Last parts of the keys a rehearsal may shrink: how much runs, never how it runs.
SIZE_FIELDS = frozenset(
    {
        "steps",
        "warmup_steps",  # counted in steps: it shrinks with them (the schedule's shape stays)
        "every_steps",
        "log_every",
        "global_batch_size",
        "batch_size",
        "seq_len",
        "loss_chunk_size",
        "num_devices",
        "max_batches",
        "max_examples",
        "limit",  # lm-eval's documents per task
        "max_eval_examples",
        "max_documents",
        "seed_documents",
        "max_prompts",
        "max_heldout_prompts",
        "max_judge_prompts",
        "heldout_prompts",
        "budget",
        "epochs",
        "shard_size",
        "max_concurrency",
        "new_vocab_size",
        "tokenizer_max_texts",
    }
)
# Last parts of the keys that filter a model's outputs by their quality, which a random model's
# cannot have: an experiment may switch them off for its rehearsal (`REHEARSAL_STANDINS`), and
# the rehearsal prints them as their own kind.
STANDIN_FIELDS = frozenset({"filter_corpus_rewrites", "max_perplexity", "min_perplexity"})
ENDPOINT_FIELDS = ("base_url", "model")
KINDS = ("size", "path", "endpoint", "stand-in")


def check_sizes(sizes: Mapping[str, Any], published, where: str = "REHEARSAL_SIZES") -> None:
  """One-line errors for a declared size that is not a number, not a size or not a key."""
  flat = config_lib.flatten(published)
  for key, value in sizes.items():
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise ValueError(f"{where}[{key!r}]={value!r}: a rehearsal size is a number")
    if key.rsplit(".", 1)[-1] not in SIZE_FIELDS:
      raise ValueError(
          f"{where}[{key!r}]: not a size (a rehearsal may shrink only {sorted(SIZE_FIELDS)})"
      )
    if key not in flat:
      raise ValueError(f"{where}[{key!r}]: the published config has no such key")


def check_standins(standins: Mapping[str, Any], published, where: str) -> None:
  """One-line errors for a stand-in that is not a quality filter of model outputs."""
  flat = config_lib.flatten(published)
  for key in standins:
    if key.rsplit(".", 1)[-1] not in STANDIN_FIELDS or key not in flat:
      raise ValueError(
          f"{where}[{key!r}]: not a quality filter of model outputs (a rehearsal may switch off "
          f"only {sorted(STANDIN_FIELDS)})"
      )


def differences(
    published,
    rehearsal,
    *,
    sizes: Iterable[str],
    paths: Iterable[str],
    endpoints: Iterable[str],
    standins: Iterable[str] = (),
) -> dict[str, list[str]]:
  """{"size" | "path" | "endpoint" | "stand-in": keys} where the two configs differ; a differing
  key of no kind is a one-line error naming it and both values."""
  allowed = {
      "size": set(sizes),
      "path": set(paths),
      "endpoint": set(endpoints),
      "stand-in": set(standins),
  }
  for key in allowed["endpoint"]:
    if key.rsplit(".", 1)[-1] not in ENDPOINT_FIELDS:
      raise ValueError(f"{key}: not an endpoint (a server role's {' or '.join(ENDPOINT_FIELDS)})")
  a, b = config_lib.flatten(published), config_lib.flatten(rehearsal)
  out: dict[str, list[str]] = {kind: [] for kind in KINDS}
  for key in sorted(set(a) | set(b)):
    if a.get(key) == b.get(key):
      continue
    kind = next((k for k in KINDS if key in allowed[k]), None)
    if kind is None:
      raise ValueError(
          f"rehearsal drifts from the published setting at {key}: {a.get(key)!r} -> "
          f"{b.get(key)!r} (only declared sizes and stand-ins, filled paths and endpoints may "
          "differ)"
      )
    out[kind].append(key)
  return out


def format_differences(diff: Mapping[str, list[str]], published, rehearsal) -> str:
  """The differing keys by kind, one line each: `size  train.steps: 3000 -> 2`."""
  a, b = config_lib.flatten(published), config_lib.flatten(rehearsal)
  lines = [
      f"{kind:<8} {key}: {a.get(key)!r} -> {b.get(key)!r}" for kind in KINDS for key in diff[kind]
  ]
  return "\n".join(lines)
