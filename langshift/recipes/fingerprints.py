"""What a recipe stage's output depends on: its fingerprint, computed here and nowhere else.

A stage declares the config keys it reads (`Stage.reads`, dotted keys or prefixes) and, for
values that are not config keys (an upstream workdir's fingerprint, each source's fields), a
function of the config (`Stage.inputs`). The stage marker records those values and a rerun with
different ones is an error naming each changed key (`stages.py`). Three rules hold for every
recipe:

1. Every training stage reads the whole training set. The main run (`Stage.trains == ""`: the
   experiment's own `train`/`optimizer`/...) reads `TRAINING_READS`; a secondary run
   (`Stage.trains == "<section>"`, a `training.run_config()` such as the worker's SFT) reads
   `seed` and its whole section, which holds its train, optimizer, model numerics and export
   dtype; what the recipe wires into it (its init, tokenizer and data) the stage declares in
   `reads`/`inputs`.
2. Operational fields are never read: the last component of a key in `OPERATIONAL_FIELDS`
   (endpoints, API keys, concurrency, timeouts, retries, batch sizes) changes how a stage runs,
   not what it writes, so a finished stage stays finished when they change (a resumed job may
   use a bigger batch or another server address). `shard_size` is not operational: it is the
   layout of a generation job's output.
3. `evals` is a read of the main training run. Its evaluations run inside training (before the
   first step and at the end) and their figures are that stage's summary, which later stages
   and `result.json` report: a finished stage under other evaluations would report figures of a
   config the user no longer runs. Changing an evaluation therefore reruns the training stage;
   add evaluations after the fact with `langshift.evaluation.run` on the export instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from langshift import config_lib

# The main training run of a recipe reads all of these (rule 1 and rule 3).
TRAINING_READS = (
    "seed",
    "init_from_hf",
    "tokenizer",
    "model",
    "data",
    "train",
    "optimizer",
    "checkpoint.export_dtype",
    "evals",
)
# The fields of a secondary run's section (`training.run_config()`) that the training set maps
# to, for the check that a stage's reads cover it (tests/recipes/test_fingerprints.py).
RUN_SECTION_FIELDS = ("train", "optimizer", "model", "export_dtype")
OPERATIONAL_FIELDS = (
    "base_url",
    "api_key_env",
    "max_concurrency",
    "timeout_s",
    "max_retries",
    "batch_size",
)


def is_operational(key: str) -> bool:
  return key.rsplit(".", 1)[-1] in OPERATIONAL_FIELDS


def training_reads(trains: str | None) -> tuple[str, ...]:
  """The keys a training stage reads by rule 1 (none for a stage that does not train)."""
  if trains is None:
    return ()
  if trains == "":
    return TRAINING_READS
  return ("seed", trains)


def stage_inputs(config, reads: Iterable[str], trains: str | None = None) -> dict[str, Any]:
  """The flat values of `reads` (and the training set of `trains`) less operational fields."""
  values = config_lib.select(config, (*training_reads(trains), *reads))
  return {k: v for k, v in values.items() if not is_operational(k)}
