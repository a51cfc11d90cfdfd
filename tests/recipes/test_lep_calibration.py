"""LEP's optional calibration (`experiments/lep_ru.py:tiny,calibrate`). As in the paper (Sec.
2.4.2) the original instruct model answers the prompt set, a judge's grades filter the answers
and copy examples join them; the `answers=propagated` variant (the propagated model answers
itself, checked against transformers' greedy decoding of the same export) trains LoRA on its
first and last layers plus the embeddings on those answers, the calibrated export changes exactly
those weights, and a killed calibration resumes from its checkpoint. Both runs share one
tokenizer/init/CPT (`lep.shared_stages`)."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers

from langshift import config_lib
from langshift.generation.job import read_outputs

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "generation"))
import test_lep_end_to_end as lep_e2e  # noqa: E402  (tiny models and a Russian corpus)
from fake_openai_server import FakeOpenAI  # noqa: E402

REPO = lep_e2e.REPO
PROMPTS = 6


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  inputs = lep_e2e.write_inputs(tmp_path_factory.mktemp("lep_calibration"))
  root = inputs["root"]
  questions = [s.rstrip(".") + "?" for s in inputs["heldout"][:PROMPTS]]
  # Plain prompts for the answers; chat records (with reference answers) held out.
  lep_e2e.data_fixtures.write_jsonl(
      root / "prompts.jsonl", [{"id": f"q{i}", "prompt": q} for i, q in enumerate(questions)]
  )
  heldout = [
      {
          "id": f"h{i}",
          "lang": "ru",
          "messages": [
              {"role": "user", "content": q},
              {"role": "assistant", "content": inputs["heldout"][-1 - i]},
          ],
      }
      for i, q in enumerate(questions[:3])
  ]
  lep_e2e.data_fixtures.write_jsonl(root / "heldout_chat.jsonl", heldout)
  return dict(inputs, questions=questions)


def _run(setup, workdir, *extra, variant="tiny,calibrate,answers=propagated"):
  root = setup["root"]
  args = [
      sys.executable,
      "-m",
      "langshift.main",
      f"--config=experiments/lep_ru.py:{variant}",
      f"--workdir={workdir}",
      f"--config.lep.base={setup['base']}",
      f"--config.lep.instruct={setup['instruct']}",
      f"--config.data.sources.ru.path={root / 'train.jsonl'}",
      f"--config.evals.heldout.data.sources.ru.path={root / 'heldout.jsonl'}",
      f"--config.lep.calibration.prompts={root / 'prompts.jsonl'}",
      f"--config.lep.calibration.heldout_prompts={root / 'heldout_chat.jsonl'}",
      "--config.mesh.num_devices=1",  # the 8-device LEP run is test_lep_end_to_end's
      # Both tests' runs share one tokenizer/init/CPT; evaluation is test_lep_sweep's.
      f"--config.lep.shared_stages={root / 'shared'}",
      "--config.lep.evaluate.suite=",
      *extra,
  ]
  result = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  return result.stdout


def _hf_answer(model, tok, question, max_new_tokens):
  prompt = tok.apply_chat_template(
      [{"role": "user", "content": question}],
      add_generation_prompt=True,
      return_tensors="pt",
      return_dict=True,
  )
  out = model.generate(**prompt, max_new_tokens=max_new_tokens, do_sample=False)
  return tok.decode(out[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)


def _hf_answers(model_dir, questions, max_new_tokens=8):
  model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
  tok = transformers.AutoTokenizer.from_pretrained(model_dir)
  return [_hf_answer(model, tok, q, max_new_tokens) for q in questions]


def test_calibration_follows_the_paper_instruct_answers_graded_plus_copy_examples(setup, tmp_path):
  """Default answers: the original instruct model's; a fake judge grades each answer by the
  first number of its question (none: unparsed); answers graded >= 8 are kept, then 2 copy
  examples from the copy corpus."""
  root = setup["root"]
  grades = ["9", "2", "10", "", "8", "5"]  # "" : the judge's verdict holds no grade
  questions = [f"{g} {q}".strip() for g, q in zip(grades, setup["questions"])]
  lep_e2e.data_fixtures.write_jsonl(
      root / "graded_prompts.jsonl", [{"id": f"q{i}", "prompt": q} for i, q in enumerate(questions)]
  )
  articles = [s.rstrip(".") + "." for s in setup["heldout"][10:13]]
  lep_e2e.data_fixtures.write_jsonl(root / "wiki.jsonl", [{"text": a} for a in articles])
  judge = FakeOpenAI().start()
  try:
    work = tmp_path / "lep"
    out = _run(
        setup,
        work,
        f"--config.lep.calibration.prompts={root / 'graded_prompts.jsonl'}",
        f"--config.lep.calibration.copy_corpus={root / 'wiki.jsonl'}",
        "--config.lep.calibration.copy_examples=2",
        "--config.lep.calibration.grade.enabled=true",
        f"--config.lep.calibration.grade.judge.base_url={judge.url}",
        "--config.lep.calibration.grade.prompt=grade:{question}",
        "--config.lep.calibration.grade.min_grade=8",
        "--config.lep.calibration.run.train.epochs=1",
        variant="tiny,calibrate",
    )
  finally:
    judge.stop()
  assert "stage calibrate" in out

  # The answers are the original instruct model's (its own tokenizer and chat template).
  outputs = {o["id"]: o for o in read_outputs(str(work / "calibration_answers" / "outputs"))}
  assert {o["generator"] for o in outputs.values()} == {os.path.basename(setup["instruct"])}
  expected = _hf_answers(setup["instruct"], questions[:3])
  assert [outputs[f"q{i}"]["response"] for i in range(3)] == expected
  propagated = _hf_answers(str(work / "lep_instruct"), questions[:3])
  assert expected != propagated  # distinguishable: the propagated model answers otherwise

  # The judge saw every non-empty answer; the grade filter keeps those graded >= 8.
  answered = [f"q{i}" for i in range(len(grades)) if outputs[f"q{i}"]["response"].strip()]
  assert len(judge.requests) == len(answered)
  kept = [i for i in answered if grades[int(i[1:])] and int(grades[int(i[1:])]) >= 8]
  unparsed = [i for i in answered if not grades[int(i[1:])]]
  low = [i for i in answered if i not in kept and i not in unparsed]
  assert low and kept  # the filter has something to keep and something to drop
  with open(work / "calibrated" / "pairs.jsonl") as f:
    pairs = [json.loads(line) for line in f]
  assert [p["id"] for p in pairs] == kept + ["copy-000000", "copy-000001"]
  for pair in pairs[: len(kept)]:
    assert pair["messages"][-1]["content"] == outputs[pair["id"]]["response"]
  # Copy examples: "copy this article" -> the article, the corpus' first two.
  for pair, article in zip(pairs[len(kept) :], articles[:2]):
    user, assistant = pair["messages"]
    assert user["role"] == "user" and user["content"].endswith(article)
    assert assistant == {"role": "assistant", "content": article}

  with open(work / "stages" / "calibration_answers.json") as f:
    answers_summary = json.load(f)["summary"]
  assert answers_summary["graded"] == len(answered)
  assert answers_summary["unparsed_grades"] == len(unparsed)
  with open(work / "stages" / "calibrate.json") as f:
    summary = json.load(f)["summary"]
  assert summary["answers"] == len(kept) and summary["copy_examples"] == 2
  assert summary["below_min_grade"] == len(low)
  assert summary["unparsed_grades"] == len(unparsed)
  assert summary["pairs"] == len(pairs)
  # CPT came from the shared folder the other test's run uses too.
  with open(work / "stages" / "cpt.json") as f:
    assert json.load(f)["summary"]["shared_dir"].startswith(str(root / "shared"))


def test_calibration_trains_first_and_last_layers_on_own_answers_and_resumes(setup, tmp_path):
  """The answers=propagated variant: what langshift's calibration did before it followed the
  paper."""
  work = tmp_path / "lep"
  out = _run(setup, work, "--config.checkpoint.keep=3")
  assert "stage calibrate" in out

  # The answers are the propagated model's own greedy answers (transformers as the reference).
  instruct_dir = str(work / "lep_instruct")
  outputs = {o["id"]: o for o in read_outputs(str(work / "calibration_answers" / "outputs"))}
  assert sorted(outputs) == [f"q{i}" for i in range(PROMPTS)]
  assert {o["generator"] for o in outputs.values()} == {"lep_instruct"}
  model = transformers.AutoModelForCausalLM.from_pretrained(instruct_dir, dtype=torch.float32)
  tok = transformers.AutoTokenizer.from_pretrained(instruct_dir)
  for i, question in enumerate(setup["questions"][:3]):
    assert outputs[f"q{i}"]["response"] == _hf_answer(model, tok, question, 8), i

  # The SFT pairs are (prompt -> own answer) chat records.
  with open(work / "calibrated" / "pairs.jsonl") as f:
    pairs = [json.loads(line) for line in f]
  nonempty = [o for o in outputs.values() if o["response"].strip()]
  assert len(pairs) == len(nonempty) > 0
  for pair in pairs:
    assert pair["messages"][-1] == {"role": "assistant", "content": outputs[pair["id"]]["response"]}

  # What changed: the adapted projections of layers 0 and 2 (merged LoRA) and the embeddings;
  # layer 1, every norm and the adapters' untargeted weights are the propagated model's, exactly.
  before = lep_e2e._tensors(instruct_dir)
  after = lep_e2e._tensors(work / "calibrated" / "hf")
  assert set(before) == set(after)
  projections = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
  changed = set()
  for name in before:
    if not np.array_equal(before[name], after[name]):
      changed.add(name)
  expected = {f"model.layers.{i}.self_attn.{p}.weight" for i in (0, 2) for p in projections[:4]}
  expected |= {f"model.layers.{i}.mlp.{p}.weight" for i in (0, 2) for p in projections[4:]}
  expected |= set(lep_e2e.EMBEDDINGS)
  assert changed == expected

  with open(work / "stages" / "calibrate.json") as f:
    summary = json.load(f)["summary"]
  assert summary["pairs"] == len(pairs)
  assert summary["step"] == summary["epoch_steps"] >= 1
  for key in ("eval/language_match/ru", "eval/reference_nll/ru"):  # held-out, before and after
    assert f"{key}_before" in summary and f"{key}_after" in summary, key
  assert summary["eval/reference_nll/ru_after"] != summary["eval/reference_nll/ru_before"]
  # The answers behind the held-out metrics, before (step 0) and after.
  for step in (0, summary["step"]):
    with open(work / "calibrated" / "eval_samples" / f"responses-step{step}.jsonl") as f:
      assert len(f.readlines()) == 2  # max_heldout_prompts=2 (tiny)

  # The PEFT adapter (untied embeddings: modules_to_save) on the propagated model gives the
  # merged model's logits.
  peft = pytest.importorskip("peft")
  merged = transformers.AutoModelForCausalLM.from_pretrained(
      str(work / "calibrated" / "hf"), dtype=torch.float32
  )
  adapted = peft.PeftModel.from_pretrained(model, str(work / "calibrated" / "hf_adapter"))
  tokens = torch.tensor([tok.encode(setup["questions"][0])])
  with torch.no_grad():
    np.testing.assert_allclose(
        adapted(tokens).logits.numpy(), merged(tokens).logits.numpy(), atol=1e-4, rtol=1e-4
    )

  # A run killed during the calibration (after an early checkpoint) resumes from it.
  os.remove(work / "stages" / "calibrate.json")
  steps = sorted(int(d) for d in os.listdir(work / "calibrated" / "checkpoints") if d.isdigit())
  for step in steps[1:]:
    shutil.rmtree(work / "calibrated" / "checkpoints" / str(step))
  shutil.rmtree(work / "calibrated" / "hf")
  out = _run(setup, work, "--config.checkpoint.keep=3")
  assert "stage calibration_answers: done before, skipped" in out
  assert f"from checkpoint step {steps[0]}" in out
  again = lep_e2e._tensors(work / "calibrated" / "hf")
  for name in after:
    np.testing.assert_allclose(again[name], after[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_calibration_config_errors_name_the_setting(tmp_path):
  from langshift.recipes.lep import calibration as lep_calibration

  sys.path.insert(0, REPO)
  from experiments import lep_ru

  config = lep_ru.get_config("tiny,calibrate")
  config.lep.calibration.prompts = str(tmp_path / "missing.jsonl")
  with pytest.raises(ValueError, match=r"config.lep.calibration.prompts=.*missing.jsonl"):
    lep_calibration.check_calibration_config(config)
  (tmp_path / "p.jsonl").write_text('{"prompt": "x"}\n')
  config.lep.calibration.prompts = str(tmp_path / "p.jsonl")
  for key, value, message in (
      ("answers", "self", r"answers='self'; expected one of \('instruct', 'propagated'\)"),
      ("copy_examples", 3, r"copy_corpus='': give a JSONL corpus for the 3 copy examples"),
      ("grade.enabled", True, r"grade.judge.base_url is empty"),
      ("run.train.steps", 5, r"run.train: epochs=3.0, steps=5; give one of them > 0"),
      ("run.train.trainable", "all", r"run.train.trainable='all'; the calibration trains LoRA"),
  ):
    bad = config_lib.apply_overrides(config, {f"lep.calibration.{key}": value})
    with pytest.raises(ValueError, match=rf"^config\.lep\.calibration\.{message}"):
      lep_calibration.check_calibration_config(bad)
  assert (
      lep_calibration.parse_grade("Оценка: 7", lep_calibration.calibration_config().grade.pattern)
      == 7
  )
  assert (
      lep_calibration.parse_grade("Grade: 8.5/10", r"(?i)grade\s*[:=]?\s*(\d+(?:[.,]\d+)?)") == 8.5
  )
  assert lep_calibration.parse_grade("good answer", r"(?i)grade\s*[:=]?\s*(\d+)") is None
  # The published setting: batch 64 x 8096, one epoch (the paper, Sec. 2.4.2).
  full = lep_ru.get_config("calibrate").lep.calibration
  assert (
      full.run.train.global_batch_size,
      full.run.train.seq_len,
      full.run.train.epochs,
      full.answers,
  ) == (
      64,
      8096,
      1.0,
      "instruct",
  )

  lora = lep_calibration.calibration_config().lora
  assert lep_calibration.layer_targets(lora, 3) == (
      r"^layers_0/(.*/)?self_attn/[qkvo]_proj/kernel$",
      r"^layers_2/(.*/)?self_attn/[qkvo]_proj/kernel$",
      r"^layers_0/(.*/)?mlp/(gate|up|down)_proj/kernel$",
      r"^layers_2/(.*/)?mlp/(gate|up|down)_proj/kernel$",
  )
  lora.layers = (0, 5)
  with pytest.raises(ValueError, match="lora.layers has 5; the model has 3 layers"):
    lep_calibration.layer_targets(lora, 3)

  bad = tmp_path / "bad.jsonl"
  bad.write_text('{"id": "a", "messages": [{"role": "assistant", "content": "x"}]}\n')
  with pytest.raises(ValueError, match=r"bad.jsonl:1: the record has no 'prompt'"):
    lep_calibration.write_requests(str(bad), str(tmp_path / "r.jsonl"), 0)
  with pytest.raises(ValueError, match=r"bad.jsonl:1: .*user turn"):
    lep_calibration.write_heldout_prompts(str(bad), str(tmp_path / "h.jsonl"), 0)
