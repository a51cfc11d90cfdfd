"""LEP's optional calibration (`experiments/lep_ru.py:tiny,calibrate`): the propagated model
answers a prompt set (checked against transformers' greedy decoding of the same export), LoRA on
its first and last layers plus the embeddings trains on those answers, and the calibrated export
changes exactly those weights; a killed calibration resumes from its checkpoint."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers

from langshift.generation.job import read_outputs

sys.path.insert(0, os.path.dirname(__file__))
import test_lep_end_to_end as lep_e2e  # noqa: E402  (tiny models and a Russian corpus)

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


def _run(setup, workdir, *extra):
  root = setup["root"]
  args = [
      sys.executable,
      "-m",
      "langshift.main",
      "--config=experiments/lep_ru.py:tiny,calibrate",
      f"--workdir={workdir}",
      f"--config.lep.base={setup['base']}",
      f"--config.lep.instruct={setup['instruct']}",
      f"--config.data.sources.ru.path={root / 'train.jsonl'}",
      f"--config.evals.heldout.data.sources.ru.path={root / 'heldout.jsonl'}",
      f"--config.lep.calibration.prompts={root / 'prompts.jsonl'}",
      f"--config.lep.calibration.heldout_prompts={root / 'heldout_chat.jsonl'}",
      "--config.mesh.num_devices=1",  # the 8-device LEP run is test_lep_end_to_end's
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


def test_calibration_trains_first_and_last_layers_on_own_answers_and_resumes(setup, tmp_path):
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
  from langshift.recipes import lep_calibration

  sys.path.insert(0, REPO)
  from experiments import lep_ru

  config = lep_ru.get_config("tiny,calibrate")
  config.lep.calibration.prompts = str(tmp_path / "missing.jsonl")
  with pytest.raises(ValueError, match=r"config.lep.calibration.prompts=.*missing.jsonl"):
    lep_calibration.check_calibration_config(config)

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
