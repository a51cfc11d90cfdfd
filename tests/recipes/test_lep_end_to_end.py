"""LEP end to end through `python -m langshift.main --config=experiments/lep_ru.py:tiny`: a new
tokenizer, initialised base, embedding-only CPT, propagation into an instruct model whose
export transformers loads and chats with; a killed run continues where it stopped."""

import json
import os
import shutil
import subprocess
import sys

import hf_testing
import numpy as np
import pytest
import torch
import transformers
from tokenizers import Tokenizer

from langshift.checkpoints.safetensors_io import SafetensorsCheckpoint

TESTS = os.path.join(os.path.dirname(__file__), "..")
sys.path.insert(0, os.path.join(TESTS, "data"))
sys.path.insert(0, os.path.join(TESTS, "tokenization"))
import data_fixtures  # noqa: E402
import lep_tiny_corpus  # noqa: E402

REPO = os.path.abspath(os.path.join(TESTS, ".."))
EMBEDDINGS = ("model.embed_tokens.weight", "lm_head.weight")
INSTRUCT_ONLY_SPECIAL = "<|python_tag|>"  # the instruct tokenizer has it, the base does not


def _write_models(root):
  """A tiny base (no chat template) and its "instruct" model: perturbed weights, the same
  tokenizer plus a chat template and one extra special token (so one row is appended)."""
  base_dir = data_fixtures.write_bpe_tokenizer(root / "base", chat_template=None)
  tok = Tokenizer.from_file(os.path.join(base_dir, "tokenizer.json"))
  ids = dict(
      bos_token_id=tok.token_to_id("<|begin_of_text|>"),
      eos_token_id=tok.token_to_id("<|eot_id|>"),
      pad_token_id=tok.token_to_id("<pad>"),
  )
  base = hf_testing.make_hf_model("llama31", base_dir, vocab_size=tok.get_vocab_size(), **ids)

  instruct_dir = data_fixtures.write_bpe_tokenizer(root / "instruct")
  tok.add_special_tokens([INSTRUCT_ONLY_SPECIAL])
  tok.save(os.path.join(instruct_dir, "tokenizer.json"))
  base.resize_token_embeddings(tok.get_vocab_size())
  torch.manual_seed(1)
  with torch.no_grad():
    for p in base.parameters():
      p.add_(torch.randn_like(p) * 0.02)
  base.save_pretrained(instruct_dir)
  return base_dir, instruct_dir


def write_inputs(root):
  """Base and instruct models, a Russian + English training file and a held-out file."""
  base_dir, instruct_dir = _write_models(root)
  ru = lep_tiny_corpus.sentences(lep_tiny_corpus.RUSSIAN, 400, seed=0)
  en = lep_tiny_corpus.sentences(lep_tiny_corpus.ENGLISH, 100, seed=1)
  data_fixtures.write_jsonl(root / "train.jsonl", [{"text": t} for t in ru + en])
  heldout = lep_tiny_corpus.sentences(lep_tiny_corpus.RUSSIAN, 40, seed=2)
  data_fixtures.write_jsonl(root / "heldout.jsonl", [{"text": t} for t in heldout])
  return dict(root=root, base=base_dir, instruct=instruct_dir, heldout=heldout)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  return write_inputs(tmp_path_factory.mktemp("lep"))


def _run_lep(setup, workdir):
  args = [
      sys.executable,
      "-m",
      "langshift.main",
      "--config=experiments/lep_ru.py:tiny",
      f"--workdir={workdir}",
      f"--config.lep.base={setup['base']}",
      f"--config.lep.instruct={setup['instruct']}",
      f"--config.data.sources.ru.path={setup['root'] / 'train.jsonl'}",
      f"--config.evals.heldout.data.sources.ru.path={setup['root'] / 'heldout.jsonl'}",
      "--config.checkpoint.keep=2",
  ]
  result = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  return result.stdout


def _tensors(directory):
  ckpt = SafetensorsCheckpoint(str(directory))
  return {name: np.asarray(ckpt.get(name)) for name in ckpt.keys()}


def test_lep_recipe_end_to_end_and_resume(setup, tmp_path):
  work = tmp_path / "lep"
  out = _run_lep(setup, work)
  assert "held-out perplexity" in out

  # (a) The extended tokenizer keeps every old id and spends fewer tokens on Russian.
  old_tok = Tokenizer.from_file(os.path.join(setup["base"], "tokenizer.json"))
  new_tok = Tokenizer.from_file(str(work / "tokenizer_new" / "tokenizer.json"))
  new_size = new_tok.get_vocab_size()
  assert new_size > old_tok.get_vocab_size()
  for token, i in old_tok.get_vocab().items():
    assert new_tok.token_to_id(token) == i
  text = " ".join(setup["heldout"])
  assert len(new_tok.encode(text).ids) < 0.8 * len(old_tok.encode(text).ids)

  # (b, c) CPT trained the embeddings only: every other tensor is base_init's, bit for bit.
  init, donor = _tensors(work / "base_init"), _tensors(work / "cpt" / "hf")
  assert set(init) == set(donor)
  assert init["model.embed_tokens.weight"].shape[0] == new_size
  for name in init:
    if name in EMBEDDINGS:
      assert not np.array_equal(init[name], donor[name]), name
    else:
      np.testing.assert_array_equal(init[name], donor[name], err_msg=name)

  # (d, e) The propagated instruct model loads, keeps the instruct blocks exactly, and chats.
  export = str(work / "lep_instruct")
  model, info = transformers.AutoModelForCausalLM.from_pretrained(
      export, output_loading_info=True, dtype=torch.float32
  )
  assert not info["missing_keys"] and not info["unexpected_keys"]
  assert model.config.vocab_size == new_size + 1  # + the instruct model's own special token
  instruct = transformers.AutoModelForCausalLM.from_pretrained(
      setup["instruct"], dtype=torch.float32
  )
  ours, theirs = model.state_dict(), instruct.state_dict()
  assert set(ours) == set(theirs)
  for name in ours:
    if name not in EMBEDDINGS:
      assert torch.equal(ours[name], theirs[name]), name
  tok = transformers.AutoTokenizer.from_pretrained(export)
  assert len(tok) == model.config.vocab_size
  tag = tok.convert_tokens_to_ids(INSTRUCT_ONLY_SPECIAL)
  assert tag == new_size
  instruct_tag = instruct.config.vocab_size - 1
  for name in EMBEDDINGS:  # the appended special token carries its instruct rows
    assert torch.equal(ours[name][tag], theirs[name][instruct_tag])
  assert tok.eos_token == "<|eot_id|>"
  assert model.generation_config.eos_token_id == tok.eos_token_id
  prompt = tok.apply_chat_template(
      [{"role": "user", "content": "Привет, как дела?"}],
      add_generation_prompt=True,
      return_tensors="pt",
      return_dict=True,
  )
  assert tok.decode(prompt["input_ids"][0]).startswith(
      "<|begin_of_text|><|start_header_id|>user<|end_header_id|>"
  )
  generated = model.generate(**prompt, max_new_tokens=6, do_sample=False)
  assert generated.shape[1] > prompt["input_ids"].shape[1]

  # A run killed during CPT (after its step-2 checkpoint) continues: the finished stages are
  # skipped, CPT resumes from step 2, the partial export is redone, and the result is the same.
  first = _tensors(export)
  tokenizer_mtime = os.path.getmtime(work / "tokenizer_new" / "tokenizer.json")
  for stage in ("cpt", "propagate"):
    os.remove(work / "stages" / f"{stage}.json")
  shutil.rmtree(work / "cpt" / "checkpoints" / "4")
  shutil.rmtree(work / "cpt" / "hf")
  os.remove(work / "lep_instruct" / "config.json")
  out = _run_lep(setup, work)
  assert "stage tokenizer: done before, skipped" in out
  assert "stage init: done before, skipped" in out
  assert "from checkpoint step 2" in out
  assert os.path.getmtime(work / "tokenizer_new" / "tokenizer.json") == tokenizer_mtime
  again = _tensors(export)
  for name in first:
    np.testing.assert_allclose(again[name], first[name], rtol=1e-5, atol=1e-6, err_msg=name)
  with open(work / "stages" / "propagate.json") as f:
    assert json.load(f)["summary"]["appended_special_tokens"] == 1


def test_replaced_unigram_vocabulary_propagates_and_loads(setup, tmp_path):
  """The replacement variants in-process, CPT skipped (donor = base_init): the SentencePiece
  specials map onto the base's, and every instruct special token is appended."""
  from langshift.recipes.lep import recipe as lep
  from langshift.tokenization.tokenizer_files import read_tokenizer_json

  sys.path.insert(0, REPO)
  from experiments import lep_ru

  config = lep_ru.get_config("tiny")
  config.lep.update(
      base=setup["base"],
      instruct=setup["instruct"],
      tokenizer_variant="unigram",
      new_vocab_size=500,
      propagation="overlap",
  )
  config.data.sources.ru.path = str(setup["root"] / "train.jsonl")
  paths = lep.RECIPE.paths(str(tmp_path))
  made = lep.build_target_tokenizer(config, paths["tokenizer"])
  lep.initialise_base(setup["base"], paths["tokenizer"], paths["init"], method="mean", seed=0)
  shutil.copytree(paths["init"], os.path.join(paths["cpt"], "hf"))
  summary = lep.propagate_into_instruct(setup["base"], setup["instruct"], paths, method="overlap")

  spec = read_tokenizer_json(paths["tokenizer"])
  assert spec["model"]["type"] == "Unigram"
  # The instruct specials a Unigram vocabulary trained from scratch lacks (all but <s>, </s>)
  # are appended after its last id.
  new_tok = Tokenizer.from_file(os.path.join(paths["tokenizer"], "tokenizer.json"))
  missing = [
      t
      for t in data_fixtures.SPECIAL_TOKENS + [INSTRUCT_ONLY_SPECIAL]
      if new_tok.token_to_id(t) is None
  ]
  assert len(missing) == len(data_fixtures.SPECIAL_TOKENS) - 1
  assert summary["appended_special_tokens"] == len(missing)
  assert summary["vocab_size"] == made["new_size"] + len(missing)
  init = _tensors(paths["init"])
  base = _tensors(setup["base"])
  # <s> starts from the base's BOS row: mapped by role, not by its (absent) string.
  np.testing.assert_array_equal(
      init["model.embed_tokens.weight"][new_tok.token_to_id("<s>")],
      base["model.embed_tokens.weight"][_base_token_id(setup, "<|begin_of_text|>")],
  )
  model, info = transformers.AutoModelForCausalLM.from_pretrained(
      paths["propagate"], output_loading_info=True, dtype=torch.float32
  )
  assert not info["missing_keys"] and not info["unexpected_keys"]
  tok = transformers.AutoTokenizer.from_pretrained(paths["propagate"])
  prompt = tok.apply_chat_template(
      [{"role": "user", "content": "Привет"}],
      add_generation_prompt=True,
      return_tensors="pt",
      return_dict=True,
  )
  assert prompt["input_ids"][0, 0].item() == tok.bos_token_id == summary["special_ids"]["bos_token"]
  assert model.generate(**prompt, max_new_tokens=3, do_sample=False).shape[1] > (
      prompt["input_ids"].shape[1]
  )


def _base_token_id(setup, token):
  return Tokenizer.from_file(os.path.join(setup["base"], "tokenizer.json")).token_to_id(token)
