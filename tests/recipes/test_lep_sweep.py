"""LEP's ablation sweep (`python -m langshift.sweep --config=experiments/lep_ru.py:tiny`): the
propagation cells of one tokenizer variant share one tokenizer/init/CPT (`lep.shared_stages`,
keyed by those stages' fingerprint), and every cell ends with the evaluate stage, whose scores
are columns of the sweep table."""

import csv
import json
import os
import subprocess
import sys

import pytest

from langshift import config_lib, sweep_results
from langshift.recipes import lep
from langshift.recipes.lep import evaluation

sys.path.insert(0, os.path.dirname(__file__))
import test_lep_end_to_end as lep_e2e  # noqa: E402  (tiny models and a Russian corpus)

REPO = lep_e2e.REPO
sys.path.insert(0, REPO)
from experiments import lep_ru  # noqa: E402

# sweep() entries 6 and 8: the Extended tokenizer with swap and with conversion propagation.
CELLS = ("lep.tokenizer_variant=extended,lep.propagation=swap", "6,8")


def test_propagation_cells_of_one_tokenizer_run_cpt_once_and_are_evaluated(tmp_path):
  inputs = lep_e2e.write_inputs(tmp_path / "inputs")
  root = tmp_path / "sweep"
  result = subprocess.run(
      [
          sys.executable,
          "-m",
          "langshift.sweep",
          "--config=experiments/lep_ru.py:tiny",
          f"--root={root}",
          f"--cells={CELLS[1]}",
          f"--config.lep.base={inputs['base']}",
          f"--config.lep.instruct={inputs['instruct']}",
          f"--config.data.sources.ru.path={inputs['root'] / 'train.jsonl'}",
          f"--config.evals.heldout.data.sources.ru.path={inputs['root'] / 'heldout.jsonl'}",
          "--config.mesh.num_devices=1",
      ],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=900,
  )
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  swap, conversion = root / CELLS[0], root / CELLS[0].replace("swap", "conversion")
  logs = {cell: (cell / "sweep.log").read_text() for cell in (swap, conversion)}

  # CPT ran once, in the shared folder of this tokenizer's stages: one training run (its
  # perplexity headline), 4 train steps, not 8.
  assert sum(log.count("held-out perplexity") for log in logs.values()) == 1
  assert "stage cpt: done before, skipped" not in logs[swap]
  for stage in ("tokenizer", "init", "cpt"):
    assert f"stage {stage}: reused from {root / 'lep_shared'}" in logs[conversion], stage
  (shared,) = os.listdir(root / "lep_shared")
  with open(root / "lep_shared" / shared / "cpt" / "metrics.jsonl") as f:
    steps = [json.loads(line)["step"] for line in f if '"train/loss"' in line]
  assert steps == [1, 2, 3, 4]
  assert not (swap / "cpt").exists() and not (conversion / "cpt").exists()
  summaries = {}
  for cell in (swap, conversion):
    with open(cell / "stages" / "cpt.json") as f:
      summaries[cell] = json.load(f)["summary"]
    assert summaries[cell]["shared_dir"] == str(root / "lep_shared" / shared)
  # The cells' propagations differ (each its own lep_instruct from the one donor).
  with open(swap / "stages" / "propagate.json") as f:
    assert json.load(f)["summary"]["method"] == "swap"
  with open(conversion / "stages" / "propagate.json") as f:
    assert json.load(f)["summary"]["method"] == "conversion"

  # The evaluate stage: handbook_mini's Russian tasks, zero-shot through the chat template, per
  # task and micro-averaged, in the cell's values and in the sweep table.
  for cell in (swap, conversion):
    values = sweep_results.cell_values(str(cell))
    for key in (
        "evaluate:eval/micro_avg",
        "evaluate:eval/translation_ru/accuracy",
        "evaluate:eval/copy_sentence_ru/length_ratio",
    ):
      assert key in values, (key, sorted(k for k in values if k.startswith("evaluate:")))
    assert values["evaluate:eval/settings/chat"] == 1.0
    assert values["evaluate:eval/settings/num_fewshot"] == 0.0
    assert values["cpt:step"] == 4  # the shared CPT's summary, in each cell's row
  with open(root / "results.csv") as f:
    rows = [r for r in csv.DictReader(f) if r["status"] == "done"]  # the grid's other cells wait
  assert {r["lep.propagation"] for r in rows} == {"swap", "conversion"}
  assert all(r["evaluate:eval/micro_avg"] for r in rows)
  assert "evaluate:eval/micro_avg" in (root / "results.md").read_text()


def test_shared_stages_are_keyed_by_the_fingerprint_of_their_inputs(tmp_path):
  config = lep_ru.get_config("tiny")
  config.lep.shared_stages = "../lep_shared"
  work = str(tmp_path / "cell")
  folder = lep.RECIPE.shared_dir(config, work)
  assert os.path.dirname(folder) == str(tmp_path / "lep_shared")
  # What comes after CPT does not change the folder; what CPT reads does.
  for key, value, same in (
      ("lep.propagation", "swap", True),
      ("lep.calibration.enabled", True, True),
      ("lep.evaluate.max_examples", 1, True),
      ("train.steps", 5, False),
      ("lep.tokenizer_variant", "bpe", False),
      ("lep.init", "random", False),
      ("evals.heldout.max_batches", 2, False),  # CPT's evaluations: a read of CPT
  ):
    changed = lep_ru.get_config("tiny")
    changed.lep.shared_stages = "../lep_shared"
    changed = config_lib.apply_overrides(changed, {key: value})
    assert (lep.RECIPE.shared_dir(changed, work) == folder) is same, key
  config.lep.shared_stages = ""
  assert lep.RECIPE.shared_dir(config, work) == ""
  with pytest.raises(ValueError, match=r"config\.lep\.evaluate\.suite='darumeru': .*data_dir"):
    evaluation.check_evaluate_config(lep_ru.get_config("model=llama3"))
