"""`config.evals.<name> = lm_eval_tasks(...)`: lm-eval tasks run during training on the job's
params and write `eval/<task>/<metric>`; the run's checkpoint then serves `--model langshift`
(`pretrained=<workdir>`) with the same numbers, a LoRA run's as its merged export does; a task
lm-eval does not know fails at build, naming it."""

import json
import os
import sys

import pytest

pytest.importorskip("lm_eval")

from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval_fixtures import evaluate, save_checkpoint, write_tasks  # noqa: E402

from langshift.evaluation.evaluators import (  # noqa: E402
    EvalContext,
    build_evaluators,
    lm_eval_tasks,
)
from langshift.evaluation.lm_eval_backend import LangshiftLM  # noqa: E402
from langshift.evaluation.lm_eval_backend_evaluator import flatten_results  # noqa: E402
from langshift.tokenization.tokenizer import load_tokenizer  # noqa: E402
from langshift.train.config import base_config  # noqa: E402
from langshift.train.trainer import train_and_evaluate  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "train"))
from train_testing import SyntheticBatches  # noqa: E402

TASKS = ["ls_mc", "ls_ppl"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  root = tmp_path_factory.mktemp("lm_eval_tasks")
  (root / "ckpt").mkdir()
  (root / "tasks").mkdir()
  save_checkpoint(root / "ckpt")
  write_tasks(root / "tasks", stop="\n")
  return root


def test_flatten_results_names_task_metric_and_filter():
  results = {
      "arc": {"alias": "arc", "acc,none": 0.5, "acc_stderr,none": 0.1, "sample_len": 4},
      "gsm8k": {"exact_match,strict-match": 0.25, "exact_match_stderr,strict-match": "N/A"},
  }
  assert flatten_results(results, "eval") == {
      "eval/arc/acc": 0.5,
      "eval/gsm8k/exact_match/strict-match": 0.25,
  }


def _ctx(files):
  return EvalContext(
      model=None,
      model_config=None,
      tokenizer=load_tokenizer(str(files / "ckpt")),
      mesh=None,
      rules=(),
      param_shardings=None,
      batch_sharding=None,
      seq_len=16,
      global_batch_size=4,
  )


def test_unknown_task_fails_at_build_naming_it(files):
  ctx = _ctx(files)
  evals = {"harness": lm_eval_tasks(tasks=["ls_mc", "ls_mcc"], include_path=str(files / "tasks"))}
  with pytest.raises(ValueError) as e:
    build_evaluators(evals, ctx)
  message = str(e.value)
  assert "\n" not in message
  assert "config.evals.harness.tasks" in message and "'ls_mcc'" in message and "ls_mc" in message


def test_task_shots_run_each_task_at_its_own_count(files, monkeypatch):
  """`name:k` (the Open LLM suite's per-task shots): one lm-eval call per count, each task's
  metrics under its own name; a malformed entry is one line naming it."""
  import lm_eval  # pylint: disable=import-outside-toplevel

  calls = []

  def fake_evaluate(**kwargs):
    calls.append((kwargs["tasks"], kwargs["num_fewshot"]))
    return {"results": {t: {"acc,none": float(len(calls))} for t in kwargs["tasks"]}}

  monkeypatch.setattr(lm_eval, "simple_evaluate", fake_evaluate)
  monkeypatch.setattr(LangshiftLM, "from_params", classmethod(lambda cls, *a, **k: None))
  entry = lm_eval_tasks(
      tasks="ls_mc:2,ls_ppl:0,ls_gen", num_fewshot=-1, include_path=str(files / "tasks")
  )
  (evaluator,) = build_evaluators({"harness": entry}, _ctx(files))
  metrics = evaluator(params=None)
  assert calls == [(["ls_mc"], 2), (["ls_ppl"], 0), (["ls_gen"], None)]
  assert metrics == {"eval/ls_mc/acc": 1.0, "eval/ls_ppl/acc": 2.0, "eval/ls_gen/acc": 3.0}
  bad = lm_eval_tasks(tasks="ls_mc:five", include_path=str(files / "tasks"))
  with pytest.raises(ValueError, match=r"^config.evals.harness.tasks: 'ls_mc:five' is not"):
    build_evaluators({"harness": bad}, _ctx(files))


def test_runs_during_training_and_the_checkpoint_serves_the_same_numbers(files, tmp_path):
  config = base_config()
  config.init_from_hf = str(files / "ckpt")
  config.model.update(dtype="float32", param_dtype="float32", remat_policy="none")
  config.train.update(steps=2, global_batch_size=4, seq_len=16, log_every=1)
  config.optimizer.update(learning_rate=1e-2, warmup_steps=1)
  config.checkpoint.update(every_steps=2, keep=1, async_save=False, export_hf_at_end=False)
  config.mesh.num_devices = 1
  config.evals.harness = lm_eval_tasks(
      tasks=",".join(TASKS), include_path=str(files / "tasks"), at_start=True, batch_size=4
  )
  workdir = tmp_path / "work"
  vocab = json.loads((files / "ckpt" / "config.json").read_text())["vocab_size"]
  batches = SyntheticBatches(4, 16, vocab)
  train_and_evaluate(config, str(workdir), train_iter=batches)
  with open(workdir / "metrics.jsonl") as f:
    rows = [json.loads(line) for line in f]
  written = {r["step"]: r for r in rows if "eval/ls_mc/acc" in r}
  assert sorted(written) == [0, 2]
  for step in (0, 2):
    assert {"eval/ls_ppl/word_perplexity", "eval/ls_ppl/bits_per_byte"} <= set(written[step])

  # The run's checkpoint, read back from the workdir, gives the numbers of the final evaluation
  # (and not those of the starting checkpoint: training changed the params).
  served = LangshiftLM(pretrained=str(workdir), batch_size=4)
  assert served.model.source.endswith("step 2")
  metrics = flatten_results(evaluate(served, files / "tasks", tasks=TASKS)["results"], "eval")
  for name, value in metrics.items():
    assert value == pytest.approx(written[2][name], rel=1e-5), name
  ppl = "eval/ls_ppl/word_perplexity"
  assert written[0][ppl] != pytest.approx(written[2][ppl], rel=1e-3)


def test_a_lora_run_is_served_as_its_merged_export(files, tmp_path):
  config = base_config()
  config.init_from_hf = str(files / "ckpt")
  config.model.update(dtype="float32", param_dtype="float32", remat_policy="none")
  config.train.update(steps=2, global_batch_size=4, seq_len=16, log_every=1, trainable="lora")
  config.train.lora.update(rank=4, alpha=8.0, dropout=0.0)
  config.optimizer.update(learning_rate=5e-2, warmup_steps=1)
  config.checkpoint.update(every_steps=2, keep=1, async_save=False, export_dtype="float32")
  config.mesh.num_devices = 1
  vocab = json.loads((files / "ckpt" / "config.json").read_text())["vocab_size"]
  workdir = tmp_path / "work"
  train_and_evaluate(config, str(workdir), train_iter=SyntheticBatches(4, 16, vocab))

  served = LangshiftLM(pretrained=str(workdir), max_length=48)
  assert served.model.config.lora is not None  # adapters applied, not merged
  export = LangshiftLM(pretrained=str(workdir / "hf"), max_length=48)  # merged by the export
  start = LangshiftLM(pretrained=str(files / "ckpt"), max_length=48)
  requests = [
      Instance("loglikelihood", {}, ("The server", " writes its log every day."), 0),
      Instance("loglikelihood", {}, ("", "Question: is it late?"), 1),
  ]
  ours, merged, before = (lm.loglikelihood(requests) for lm in (served, export, start))
  for (a, _), (b, _), (c, _) in zip(ours, merged, before):
    assert abs(a - b) <= 1e-4 and abs(a - c) > 1e-2
