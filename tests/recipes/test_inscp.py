"""InsCP end to end through `python -m langshift.main --config=experiments/inscp_zh_tw.py:
size=tiny`: scoring stage -> selection -> CPT on wrapped samples -> response-language evaluation
and pairwise judging; a start from LEP's export (recipes compose); one-line errors for bad input."""

import importlib.util
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import transformers

TESTS = os.path.join(os.path.dirname(__file__), "..")
sys.path.insert(0, os.path.join(TESTS, "data"))
sys.path.insert(0, os.path.dirname(__file__))
import data_fixtures  # noqa: E402
import test_lep_end_to_end as lep_test  # noqa: E402

from langshift import config_lib  # noqa: E402
from langshift.recipes.inscp import RECIPE  # noqa: E402

check_inscp_config = RECIPE.check_config

REPO = os.path.abspath(os.path.join(TESTS, ".."))
EXPERIMENT = os.path.join(REPO, "experiments", "inscp_zh_tw.py")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  inputs = lep_test.write_inputs(tmp_path_factory.mktemp("inscp"))
  root = inputs["root"]
  prompts = [
      {"prompt": "Привет, как дела?", "language": "ru", "reference": "Хорошо."},
      {"prompt": "Как установить пакет?", "language": "ru"},
      {"prompt": "How do I install a package?", "language": "en", "reference": "Use apt."},
      {"prompt": "What is a kernel?", "language": "en"},
  ]
  data_fixtures.write_jsonl(root / "prompts.jsonl", prompts)
  # Question/answer records: each question and each answer becomes its own sample (qa_split).
  with open(root / "train.jsonl") as f:
    texts = [json.loads(line)["text"] for line in f][:40]
  qa = [{"prompt": q, "response": a} for q, a in zip(texts[::2], texts[1::2])]
  data_fixtures.write_jsonl(root / "qa.jsonl", qa)
  (root / "tmmluplus").mkdir()
  rows = "question,A,B,C,D,answer\n" + "".join(f"q{i},a,b,c,d,{'ABCD'[i % 4]}\n" for i in range(4))
  (root / "tmmluplus" / "geography_test.csv").write_text(rows)
  (root / "tmmluplus" / "geography_dev.csv").write_text(rows)
  return inputs


def _args(setup, workdir, arg="size=tiny", *extra):
  root = setup["root"]
  return [
      sys.executable,
      "-m",
      "langshift.main",
      f"--config=experiments/inscp_zh_tw.py:{arg}",
      f"--workdir={workdir}",
      f"--config.data.sources.zh.path={root / 'qa.jsonl'}",
      f"--config.evals.heldout.data.sources.zh.path={root / 'heldout.jsonl'}",
      f"--config.evals.alignment.prompts={root / 'prompts.jsonl'}",
      *extra,
  ]


def _run(args):
  result = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  return result.stdout + result.stderr


def _metrics(workdir):
  with open(os.path.join(workdir, "cpt", "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_scored_selected_wrapped_trained_and_judged(setup, tmp_path):
  workdir = tmp_path / "run"
  root = setup["root"]
  _run(
      _args(
          setup,
          workdir,
          "size=tiny,ppl=1000000",
          f"--config.inscp.instruct={setup['instruct']}",
          f"--config.inscp.judge.prompts={root / 'prompts.jsonl'}",
          "--config.inscp.judge.answer_max_new_tokens=4",
          "--config.inscp.judge.role.backend=local",
          f"--config.inscp.judge.role.hf_dir={setup['instruct']}",
          "--config.inscp.judge.role.max_new_tokens=4",
          f"--config.inscp.tmmluplus.data_dir={root / 'tmmluplus'}",
      )
  )
  # Scores: one per sample (a question and an answer per record), all finite; selection read
  # them (the bound keeps all).
  records = 2 * 20
  scores = np.load(workdir / "scores" / "zh" / "scores.npy")
  assert len(scores) == records and np.isfinite(scores).all()
  with open(workdir / "stages" / "cpt.json") as f:
    cpt = json.load(f)["summary"]
  assert cpt["zh/samples"] == cpt["zh/selected"] == records
  # The response evaluation ran before the first step and at the end, per prompt language.
  rows = [r for r in _metrics(workdir) if "align/language_match" in r]
  assert len(rows) == 2 and {"align/language_match/ru", "align/reference_nll/en"} <= set(rows[0])
  # The judge stage compared after vs before in both orders, per language.
  with open(workdir / "stages" / "evaluate.json") as f:
    evaluated = json.load(f)["summary"]
  assert evaluated["judge/prompts"] == 4
  # The tiny judge (4 new tokens) may give no verdict: such pairs are counted, not scored (no
  # score at all when none was judged), never folded in as ties.
  judged, unparsed = evaluated["judge/ru/judged_pairs"], evaluated["judge/ru/unparsed_verdicts"]
  ru_pairs = 2
  assert judged <= ru_pairs and ru_pairs - judged <= unparsed <= 2 * (ru_pairs - judged)
  score = evaluated["judge/ru/score"]
  assert (judged == 0 and math.isnan(score)) or 0 <= score <= 100
  # TMMLU+ from local files in its layout, before and after.
  for tag in ("before", "after"):
    assert 0 <= evaluated[f"{tag}/tmmluplus/tmmluplus_geography/accuracy"] <= 1
  with open(workdir / "evaluate" / "judged.jsonl") as f:
    assert len(f.readlines()) == 4
  # The export is a chat model transformers loads, with the instruct tokenizer's template.
  export = workdir / "cpt" / "hf"
  transformers.AutoModelForCausalLM.from_pretrained(export)
  assert transformers.AutoTokenizer.from_pretrained(export).chat_template
  # A second selection bound is a changed input of the scoring-dependent stage, not a reuse.
  rerun = subprocess.run(
      _args(
          setup,
          workdir,
          "size=tiny,ppl=5",
          f"--config.inscp.instruct={setup['instruct']}",
      ),
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=600,
  )
  assert rerun.returncode != 0
  assert "inscp.max_perplexity: 1000000.0 -> 5.0" in rerun.stderr + rerun.stdout


def test_starts_from_the_lep_export(setup, tmp_path):
  lep_workdir = tmp_path / "lep"
  lep_test._run_lep(setup, lep_workdir)  # pylint: disable=protected-access
  workdir = tmp_path / "inscp"
  _run(_args(setup, workdir, "size=tiny,start=lep", f"--config.inscp.lep_workdir={lep_workdir}"))
  lep_export, export = lep_workdir / "lep_instruct", workdir / "cpt" / "hf"
  with open(lep_export / "config.json") as f, open(export / "config.json") as g:
    assert json.load(f)["vocab_size"] == json.load(g)["vocab_size"]
  # InsCP trained LEP's model with LEP's tokenizer (new vocabulary, instruct chat tokens).
  with open(lep_export / "tokenizer.json") as f, open(export / "tokenizer.json") as g:
    assert json.load(f)["model"]["vocab"] == json.load(g)["model"]["vocab"]
  with open(workdir / "stages" / "cpt.json") as f:
    inputs = json.load(f)["inputs"]
  assert inputs["start"] == str(lep_export) and inputs["start.fingerprint"]


def _config(setup, arg="size=tiny", **overrides):
  spec = importlib.util.spec_from_file_location("inscp_zh_tw", EXPERIMENT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  root = setup["root"]
  config = module.get_config(arg)
  base = {
      "inscp.instruct": setup["instruct"],
      "data.sources.zh.path": str(root / "qa.jsonl"),
      "evals.heldout.data.sources.zh.path": str(root / "heldout.jsonl"),
      "evals.alignment.prompts": str(root / "prompts.jsonl"),
  }
  return config_lib.apply_overrides(config, {**base, **overrides})


def test_bad_input_is_a_one_line_error(setup, tmp_path):
  check_inscp_config(_config(setup))  # the good config passes
  # A model whose tokenizer has no chat template cannot wrap text behind an empty user turn.
  with pytest.raises(ValueError, match=r"base: InsCP wraps text as a reply .* no chat_template"):
    check_inscp_config(_config(setup, **{"inscp.instruct": setup["base"]}))
  # ... orgCP needs no template.
  check_inscp_config(_config(setup, "size=tiny,variant=orgcp", **{"inscp.instruct": setup["base"]}))
  bad = tmp_path / "bad.jsonl"
  data_fixtures.write_jsonl(bad, [{"prompt": "x", "language": "qya"}])
  with pytest.raises(ValueError, match=r"config\.evals\.alignment\.prompts: .*bad\.jsonl:1: langu"):
    check_inscp_config(_config(setup, **{"evals.alignment.prompts": str(bad)}))
  with pytest.raises(ValueError, match=r"template='none' but config\.inscp\.mode='inscp'"):
    check_inscp_config(_config(setup, **{"data.sources.zh.template": "none"}))
  with pytest.raises(ValueError, match=r"config\.train\.trainable='embeddings' contradicts"):
    check_inscp_config(_config(setup, **{"train.trainable": "embeddings"}))
  with pytest.raises(ValueError, match=r"give exactly one of instruct .* and lep_workdir"):
    check_inscp_config(_config(setup, **{"inscp.lep_workdir": str(tmp_path)}))


def _experiment(name):
  spec = importlib.util.spec_from_file_location(
      name, os.path.join(REPO, "experiments", f"{name}.py")
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_published_learning_rate_is_full_parameter_fine_tuning_not_leps_embedding_only():
  # InsCP trains every weight of an instruct model: 2e-5 (Llama 2's full-parameter SFT LR at the
  # same tokens per step), not LEP's 2e-4 for the embeddings alone, which it used to copy.
  inscp, lep = _experiment("inscp_zh_tw"), _experiment("lep_ru")
  published = inscp.get_config()
  assert published.train.trainable == "all"
  assert published.optimizer.learning_rate == 2e-5
  leps = lep.get_config()
  assert leps.train.trainable == "embeddings" and leps.optimizer.learning_rate == 2e-4
  assert published.optimizer.learning_rate < leps.optimizer.learning_rate
  # The CPU variant runs the same full-parameter regime at the published value.
  assert inscp.get_config("size=cpu").optimizer.learning_rate == 2e-5
