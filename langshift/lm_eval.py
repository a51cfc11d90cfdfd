r"""lm-evaluation-harness's command line with the `langshift` model type registered.

  python -m langshift.lm_eval --model langshift \
      --model_args pretrained=workdir/run,batch_size=8 --tasks arc_easy,hellaswag --num_fewshot 0

Every argument is lm-eval's own (`lm-eval run --help`); `--model_args` of the langshift type are
listed in langshift/evaluation/lm_eval_backend.py (`pretrained` is a langshift workdir, whose
newest checkpoint or `step=N` is served on the run's mesh, or a Hugging Face directory). lm-eval
0.4.13 finds model types only through `register_model` in an imported module, not through package
entry points, so the plain `lm_eval` command does not know `langshift`: this entry imports the
backend first, then hands over to lm-eval's CLI. lm-eval is an optional extra
(`pip install -e .[lm_eval]`).
"""

from __future__ import annotations

import sys


def main() -> None:
  try:
    # pylint: disable=import-outside-toplevel
    from lm_eval.__main__ import cli_evaluate

    import langshift.evaluation.lm_eval_backend  # noqa: F401  (registers --model langshift)
  except ImportError as e:
    sys.exit(
        f"langshift.lm_eval: lm-evaluation-harness is not installed ({e}); "
        "pip install -e .[lm_eval]"
    )
  from langshift.errors import one_line  # pylint: disable=import-outside-toplevel

  try:
    cli_evaluate()
  except (ValueError, FileNotFoundError) as e:  # bad input (a task, a path, a model_arg): one line
    sys.exit(f"langshift.lm_eval: {one_line(e)}")


if __name__ == "__main__":
  main()
