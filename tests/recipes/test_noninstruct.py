"""Non-instructional fine-tuning end to end on tiny models: every stage's counts, the join of the
teacher's continuations into pairs, LoRA and full SFT with exports that transformers and peft
load, exactly-once continuations through a SIGKILL, and one-line errors for bad inputs."""

import json
import math
import os
import subprocess
import sys

import noninstruct_fixtures as fx
import pytest

from langshift import config_lib
from langshift.generation.job import read_outputs
from langshift.recipes import non_instructional as ni_lib
from langshift.recipes.recipe import run_recipe

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, REPO)
from experiments import noninstruct  # noqa: E402


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
  root = tmp_path_factory.mktemp("noninstruct")
  records = fx.write_corpus(root / "corpus.jsonl", n=10)
  fx.write_corpus(root / "heldout.jsonl", n=4, seed=7)
  return dict(
      root=root,
      corpus=str(root / "corpus.jsonl"),
      heldout=str(root / "heldout.jsonl"),
      model=fx.write_chat_model(root / "model"),
      records=records,
  )


def _config(inputs, teacher_url, arg="size=tiny", **overrides):
  config = noninstruct.get_config(arg)
  config.init_from_hf = inputs["model"]
  n = config.noninstruct
  n.corpus.path = inputs["corpus"]
  n.heldout.path = inputs["heldout"]
  n.teacher.update(base_url=teacher_url, model="fake-teacher")
  config.lock()
  return config_lib.apply_overrides(config, overrides)


def _read(path):
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def _marker(workdir, stage):
  with open(os.path.join(workdir, "stages", f"{stage}.json")) as f:
    return json.load(f)["summary"]


def test_every_stage_runs_with_lora_and_peft_loads_the_adapter(inputs, tmp_path):
  work = str(tmp_path / "work")
  with fx.FakeTeacher() as teacher:
    result = run_recipe(ni_lib.RECIPE, _config(inputs, teacher.url), work, log=lambda _: None)
    assert len(teacher.requests) == 10
  assert result["status"] == "done"
  split = _marker(work, "split")
  assert (split["documents"], split["split"], split["too_short"]) == (10, 10, 0)
  assert split["heldout_prompts"] == 4
  requests = _read(os.path.join(work, "split", "requests.jsonl"))
  for r, doc in zip(requests, inputs["records"]):
    assert f"{r['first_half']} {r['reference']}" == doc["text"]  # cut at a word boundary
    assert r["messages"][0]["content"].startswith("Continue the following text.")
    assert r["messages"][0]["content"].endswith("\n\n" + r["first_half"])
  # The join: the job's `completion` becomes the pair's `response` (the pair template's field).
  pairs = _read(os.path.join(work, "pairs", "pairs.jsonl"))
  assert [p["prompt"] for p in pairs] == [r["first_half"] for r in requests]
  assert [p["response"] for p in pairs] == [
      fx.continuation(r["messages"][0]["content"]) for r in requests
  ]
  sft = _marker(work, "sft")
  assert sft["step"] == 3
  assert "eval/language_match_before" in sft and "eval/reference_nll_after" in sft
  rows = [r for r in _read(os.path.join(work, "sft", "metrics.jsonl")) if "train/loss" in r]
  assert rows and all(r["train/tokens"] > 0 for r in rows)  # continuation tokens carry loss
  export = _marker(work, "export")
  assert export["trainable"] == "lora" and 0 < export["trainable_params"] < export["params"]
  assert export["optimizer_state_bytes"] == 2 * 4 * export["trainable_params"]  # fp32 Adam mu, nu
  metrics = json.loads(open(os.path.join(work, "evaluate", "metrics.json")).read())
  assert "eval/reference_nll_before" in metrics and "eval/reference_nll_after" in metrics

  import numpy as np
  import peft
  import torch
  import transformers

  def load(path):
    return transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()

  tokens = torch.as_tensor(np.random.default_rng(0).integers(0, 300, size=(1, 9)))
  with torch.no_grad():
    merged = load(result["export"])(tokens).logits
    adapted = peft.PeftModel.from_pretrained(load(inputs["model"]), export["peft_adapter"])
    np.testing.assert_allclose(adapted(tokens).logits.numpy(), merged.numpy(), atol=1e-4)
  # A rerun skips every stage and asks the teacher nothing.
  with fx.FakeTeacher() as teacher:
    again = run_recipe(ni_lib.RECIPE, _config(inputs, teacher.url), work, log=lambda _: None)
    assert not teacher.requests
  assert all(s["skipped"] for s in again["stages"].values())


def test_local_teacher_word_split_and_full_tuning(inputs, tmp_path):
  work = str(tmp_path / "work")
  config = _config(
      inputs,
      "",
      "size=tiny,tuning=full,unit=word,teacher=local",
      **{"noninstruct.teacher.hf_dir": inputs["model"], "noninstruct.heldout.path": ""},
  )
  result = run_recipe(ni_lib.RECIPE, config, work, log=lambda _: None)
  assert result["status"] == "done"
  teacher = _marker(work, "teacher")
  assert teacher["continuations"] == 10 and teacher["teacher"] == "model"
  assert teacher["teacher_tokens_per_s"] > 0
  outputs = read_outputs(os.path.join(work, "teacher", "outputs"))
  assert {o["generator"] for o in outputs} == {"model"}
  export = _marker(work, "export")
  assert export["trainable"] == "all" and export["trainable_params"] == export["params"]
  assert not os.path.exists(os.path.join(work, "sft", "hf_adapter"))


def test_response_tuning_trains_on_responses_behind_an_empty_instruction(inputs, tmp_path):
  corpus = tmp_path / "lima.jsonl"
  fx.data_fixtures.write_jsonl(
      corpus, [{"id": f"r{i}", "response": t} for i, t in enumerate(fx.english_documents(6))]
  )
  config = _config(
      inputs, "", "size=tiny,mode=response_tuning", **{"noninstruct.corpus.path": str(corpus)}
  )
  assert config.optimizer.learning_rate == 1e-3  # tiny sizing; full: LIMA's 1e-5
  assert noninstruct.get_config("mode=response_tuning").optimizer.learning_rate == 1e-5
  work = str(tmp_path / "work")
  result = run_recipe(ni_lib.RECIPE, config, work, log=lambda _: None)
  assert "teacher" not in result["stages"]
  pairs = _read(os.path.join(work, "pairs", "pairs.jsonl"))
  assert [set(p) for p in pairs] == [{"id", "response"}] * 6
  with open(os.path.join(work, "sft", "config.json")) as f:
    assert json.load(f)["data"]["sources"]["pairs"]["template"] == "response"


def _cli(inputs, workdir, teacher_url, env=None):
  args = [
      sys.executable,
      "-m",
      "langshift.main",
      "--config=experiments/noninstruct.py:tiny",
      f"--workdir={workdir}",
      f"--config.init_from_hf={inputs['model']}",
      f"--config.noninstruct.corpus.path={inputs['corpus']}",
      f"--config.noninstruct.teacher.base_url={teacher_url}",
  ]
  return args, {**os.environ, **(env or {})}


def test_killed_teacher_stage_reruns_each_continuation_exactly_once(inputs, tmp_path):
  work = tmp_path / "work"
  with fx.FakeTeacher() as teacher:
    args, env = _cli(inputs, work, teacher.url, env={"LANGSHIFT_FAULT": "kill@teacher_records=4"})
    killed = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert not (work / "stages" / "teacher.json").exists()
    done_before = read_outputs(str(work / "teacher" / "outputs"), include_incomplete=True)
    assert len(done_before) == 4 and len(teacher.requests) == 4
    args, env = _cli(inputs, work, teacher.url)
    again = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(teacher.requests) == 10  # the 6 missing ones, each once
  assert "stage split: done before, skipped" in again.stdout
  outputs = read_outputs(str(work / "teacher" / "outputs"))
  assert sorted(o["id"] for o in outputs) == sorted(r["id"] for r in inputs["records"])
  kept = {o["id"]: o["completion"] for o in outputs}
  assert all(kept[o["id"]] == o["completion"] for o in done_before)


def test_bad_inputs_are_one_line_errors_and_keep_finished_work(inputs, tmp_path):
  with fx.FakeTeacher() as teacher:
    config = _config(inputs, teacher.url, **{"noninstruct.split.min_units": 400})
    with pytest.raises(
        ValueError,
        match=r"^config.noninstruct.split.min_units=400: every document of .*corpus.jsonl is "
        r"shorter \(the longest has \d+ tokens\)",
    ):
      run_recipe(ni_lib.RECIPE, config, str(tmp_path / "w1"), log=lambda _: None)
    assert not teacher.requests
  # A teacher that answers nothing: the pairs stage stops; the continuations stay recorded.
  work = str(tmp_path / "w2")
  with fx.FakeTeacher(empty=True) as teacher:
    with pytest.raises(
        ValueError, match=r"^stage pairs: the teacher returned empty text for all 10"
    ):
      run_recipe(ni_lib.RECIPE, _config(inputs, teacher.url), work, log=lambda _: None)
  assert _marker(work, "teacher")["continuations"] == 10
  # A teacher that is down: one error naming the endpoint; the split stays done.
  work = str(tmp_path / "w3")
  with pytest.raises(Exception, match=r"127\.0\.0\.1:9"):
    run_recipe(ni_lib.RECIPE, _config(inputs, "http://127.0.0.1:9/v1"), work, log=lambda _: None)
  assert os.path.exists(os.path.join(work, "stages", "split.json"))
  with pytest.raises(ValueError, match=r"noninstruct.split.unit='line'; expected one of"):
    run_recipe(
        ni_lib.RECIPE,
        _config(inputs, "http://x/v1", **{"noninstruct.split.unit": "line"}),
        str(tmp_path / "w4"),
        log=lambda _: None,
    )


def test_a_base_student_trains_answers_and_ships_in_the_runs_chat_template(inputs, tmp_path):
  # The published setting: a base student whose tokenizer has no chat template, pairs rendered in
  # Mistral's [INST] format. The held-out answers before and after SFT, the untuned and tuned
  # students' answers for the judge and the export all use that template.
  import transformers

  from langshift.data import formatting
  from langshift.tokenization import chat_templates
  from langshift.tokenization.tokenizer import load_tokenizer

  base = fx.write_chat_model(tmp_path / "base", chat_template=None)
  assert load_tokenizer(base).chat_template is None
  prompts = tmp_path / "judge.jsonl"
  fx.data_fixtures.write_jsonl(prompts, [{"prompt": "Explain the kernel.", "language": "en"}])
  work = str(tmp_path / "work")
  with fx.FakeTeacher() as teacher:
    overrides = {
        "data.chat_template": "mistral",
        "noninstruct.evaluate.judge_prompts": str(prompts),
        "noninstruct.evaluate.answer_max_new_tokens": 4,
        "noninstruct.evaluate.judge.base_url": teacher.url,
    }
    result = run_recipe(
        ni_lib.RECIPE,
        _config({**inputs, "model": base}, teacher.url, **overrides),
        work,
        log=lambda _: None,
    )
    assert sum(r.startswith("Please act as an impartial judge") for r in teacher.requests) == 2
  assert result["status"] == "done"
  sft = _marker(work, "sft")
  assert "eval/language_match_before" in sft and "eval/language_match_after" in sft
  judged = _read(os.path.join(work, "evaluate", "judged.jsonl"))
  assert [x["prompt"] for x in judged] == ["Explain the kernel."]
  # sft/hf renders a pair exactly as the pipeline rendered it for training.
  pair = _read(os.path.join(work, "pairs", "pairs.jsonl"))[0]
  messages = formatting.pair_messages(pair["prompt"], pair["response"])
  trained, _ = formatting.format_chat(
      messages,
      chat_templates.BUILTIN_TEMPLATES["mistral"],
      load_tokenizer(base).special_tokens_map,
  )
  assert trained.startswith("<|begin_of_text|>[INST] ")
  tok = transformers.AutoTokenizer.from_pretrained(result["export"])
  assert tok.apply_chat_template(messages, tokenize=False) == trained


def test_long_documents_are_cut_at_a_word_end_before_the_split():
  from langshift.recipes.non_instructional import splitting as ni

  text = "alpha beta gamma delta"
  offsets = ni.unit_offsets([text], "char")[0]
  assert ni.truncate(text, offsets, 13) == "alpha beta"  # char 13 falls inside "gamma"
  assert ni.truncate(text, ni.unit_offsets([text], "word")[0], 3) == "alpha beta gamma"
  assert ni.truncate(text, offsets, 100) == text


def test_evaluate_stage_judges_the_tuned_student_against_the_untuned_one(inputs, tmp_path):
  prompts = tmp_path / "judge.jsonl"
  words = ("kernel", "disk", "network", "firewall")
  fx.data_fixtures.write_jsonl(
      prompts, [{"prompt": f"Explain the {w}.", "language": "en"} for w in words]
  )
  work = str(tmp_path / "work")
  with fx.FakeTeacher() as teacher:
    overrides = {
        "noninstruct.heldout.path": "",
        "noninstruct.evaluate.judge_prompts": str(prompts),
        "noninstruct.evaluate.answer_max_new_tokens": 6,
        "noninstruct.evaluate.judge.base_url": teacher.url,
    }
    run_recipe(ni_lib.RECIPE, _config(inputs, teacher.url, **overrides), work, log=print)
    # Four prompts, each judged in both orders.
    judged = [r for r in teacher.requests if r.startswith("Please act as an impartial judge")]
    assert len(judged) == 8
  # The fake judge prefers the longer answer whichever side it is shown on, so each pair scores
  # 1 (tuned answer longer) or 0 (shorter); to answers of equal length it gives no verdict, so
  # that pair is left out of the score (None) and both its verdicts are counted unparsed (no
  # longer a tie): recompute that from the answers.
  with open(os.path.join(work, "evaluate", "judged.jsonl")) as f:
    pairs = [json.loads(line) for line in f]
  assert [x["prompt"] for x in pairs] == [f"Explain the {w}." for w in words]
  expected = [
      1.0
      if len(x["after"]) > len(x["before"])
      else 0.0
      if len(x["after"]) < len(x["before"])
      else None
      for x in pairs
  ]
  assert [x["score"] for x in pairs] == expected
  assert any(x["after"] != x["before"] for x in pairs)  # the tuned student answers differently
  metrics = json.loads(open(os.path.join(work, "evaluate", "metrics.json")).read())
  judged = [e for e in expected if e is not None]
  assert metrics["judge/judged_pairs"] == len(judged)
  assert metrics["judge/unparsed_verdicts"] == 2 * expected.count(None)
  if judged:
    assert metrics["judge/score"] == pytest.approx(100 * sum(judged) / len(judged))
    assert metrics["judge/win_rate"] == pytest.approx(judged.count(1.0) / len(judged))
  else:  # no pair judged: no score, neither parity nor a loss
    assert math.isnan(metrics["judge/score"]) and math.isnan(metrics["judge/win_rate"])
