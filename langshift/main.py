"""Entry point: `python -m langshift.main --config=experiments/demo.py[:variant] --workdir=DIR`.

Overrides: `--config.optimizer.learning_rate=1e-5`. `config.recipe` picks what runs (cpt: the
training engine; lep: learned embedding propagation); all logic lives in importable libraries.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from langshift.parallel.distributed import maybe_initialize_distributed
from langshift.recipes.run import run_experiment

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (path[:arg]).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, metrics and exports go here.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:  # orbax logs every file it renames at INFO
    logging.set_verbosity(logging.WARNING)
  maybe_initialize_distributed()
  run_experiment(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
