"""`data.chat_template` is the run's template: a base model (a tokenizer without one) trained on
chat data ships the template it was trained in, and the run's evaluators render in it."""

import json
import os
import sys

import hf_testing
import pytest

from langshift.data import config as data_config_lib
from langshift.data import formatting
from langshift.data.pipeline import make_train_iterator
from langshift.evaluation.evaluators import response_eval
from langshift.tokenization import chat_templates
from langshift.tokenization.tokenizer import load_tokenizer
from langshift.train.config import base_config
from langshift.train.trainer import train_and_evaluate

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "data"))
import data_fixtures  # noqa: E402

MESSAGES = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "Where is the kernel?"},
    {"role": "assistant", "content": "In /boot."},
    {"role": "user", "content": "And the logs?"},
    {"role": "assistant", "content": "In /var/log."},
]


def _write_base_model(directory):
  """A tiny random Llama whose tokenizer has no chat template (a base checkpoint)."""
  data_fixtures.write_bpe_tokenizer(directory, chat_template=None)
  tokenizer = load_tokenizer(str(directory))
  hf_testing.make_hf_model(
      "llama31",
      directory,
      vocab_size=tokenizer.vocab_size,
      bos_token_id=tokenizer.bos_id,
      eos_token_id=tokenizer.eos_id,
      pad_token_id=tokenizer.pad_id,
  )
  return str(directory)


def _chat_records(n=8):
  return [
      {
          "messages": [
              {"role": "user", "content": f"Question {i}: {t[:30]}"},
              {"role": "assistant", "content": t[30:70]},
          ]
      }
      for i, t in enumerate(data_fixtures.CORPUS[:n])
  ]


def _config(model_dir, data_path, **data):
  c = base_config()
  c.init_from_hf = model_dir
  c.data.sources.chat = data_config_lib.source_config(
      path=data_path, format="jsonl", template="chat"
  )
  c.data.update(packing="greedy", **data)
  c.model.update(dtype="float32", param_dtype="float32", remat_policy="none")
  c.train.update(steps=2, global_batch_size=4, seq_len=64, log_every=1)
  c.optimizer.update(learning_rate=1e-3, warmup_steps=1)
  c.checkpoint.update(every_steps=2, keep=2, async_save=False, export_dtype="float32")
  c.mesh.num_devices = 1
  return c


def test_base_model_run_ships_and_evaluates_in_its_data_chat_template(tmp_path):
  import transformers

  model_dir = _write_base_model(tmp_path / "base")
  assert load_tokenizer(model_dir).chat_template is None
  data_fixtures.write_jsonl(tmp_path / "chat.jsonl", _chat_records())
  data_fixtures.write_jsonl(
      tmp_path / "prompts.jsonl",
      [{"prompt": "Where is the kernel?", "language": "en", "reference": "In /boot."}],
  )
  config = _config(model_dir, str(tmp_path / "chat.jsonl"), chat_template="chatml")
  config.evals.answers = response_eval(
      prompts=str(tmp_path / "prompts.jsonl"), at_start=True, max_new_tokens=3, chat=True
  )
  work = tmp_path / "work"
  summary = train_and_evaluate(config, str(work))
  # The response evaluation rendered its prompts in the run's template, before and after.
  assert "eval/language_match_before" in summary and "eval/language_match_after" in summary
  with open(work / "eval_samples" / "answers-step2.jsonl") as f:
    assert json.loads(f.readline())["response"] is not None

  # What the training pipeline rendered for these messages ...
  template = chat_templates.resolve_chat_template("chatml", None)
  special = load_tokenizer(model_dir).special_tokens_map
  trained, _ = formatting.format_chat(MESSAGES, template, special)
  assert trained.startswith("<|im_start|>system\nAnswer briefly.<|im_end|>\n")
  # ... is what transformers renders from the export and from the run's tokenizer copy.
  for folder in ("hf", "tokenizer"):
    tok = transformers.AutoTokenizer.from_pretrained(str(work / folder))
    assert tok.apply_chat_template(MESSAGES, tokenize=False) == trained, folder
    assert load_tokenizer(str(work / folder)).chat_template == template
  prompt = transformers.AutoTokenizer.from_pretrained(str(work / "hf")).apply_chat_template(
      MESSAGES[:2], tokenize=False, add_generation_prompt=True
  )
  assert prompt.endswith(
      "<|im_start|>user\nWhere is the kernel?<|im_end|>\n<|im_start|>assistant\n"
  )
  # Answers in ChatML end with <|im_end|>, which the base tokenizer's EOS (<|eot_id|>) is not:
  # the run's generators and the export stop on both (transformers reads generation_config).
  base = load_tokenizer(model_dir)
  im_end, eot = base.token_to_id("<|im_end|>"), base.token_to_id("<|eot_id|>")
  assert base.eos_ids == (eot,)
  assert load_tokenizer(model_dir, chat_template="chatml").eos_ids == (eot, im_end)
  gen = transformers.GenerationConfig.from_pretrained(str(work / "hf"))
  assert gen.eos_token_id == [eot, im_end]
  assert load_tokenizer(str(work / "hf")).eos_ids == (eot, im_end)
  # The base model's own files are untouched.
  assert load_tokenizer(model_dir).chat_template is None


def test_the_configs_template_wins_over_the_tokenizers(tmp_path):
  from langshift.tokenization.tokenizer_files import write_chat_template

  tok_dir = data_fixtures.write_bpe_tokenizer(tmp_path / "instruct")
  own = load_tokenizer(tok_dir)
  assert own.chat_template == data_fixtures.LLAMA3_STYLE_TEMPLATE
  assert load_tokenizer(tok_dir, chat_template="tokenizer").chat_template == own.chat_template
  mistral = load_tokenizer(tok_dir, chat_template="mistral")
  assert mistral.chat_template == chat_templates.BUILTIN_TEMPLATES["mistral"]
  assert mistral.encode("[INST] hi") == own.encode("[INST] hi")  # the same vocabulary
  with pytest.raises(chat_templates.ChatTemplateError, match="unknown chat template 'mistrl'"):
    load_tokenizer(tok_dir, chat_template="mistrl")
  # Written into a copy of the files, it replaces the config's field (transformers: the file
  # takes priority), which is dropped so that the directory says one thing.
  write_chat_template(tok_dir, mistral.chat_template)
  assert load_tokenizer(tok_dir).chat_template == mistral.chat_template
  with open(os.path.join(tok_dir, "tokenizer_config.json")) as f:
    assert "chat_template" not in json.load(f)


def test_a_record_the_template_cannot_render_is_named_in_one_line(tmp_path):
  # Mistral's [INST] template has no system role: the pipeline names the record's file and line.
  model_dir = data_fixtures.write_bpe_tokenizer(tmp_path / "base", chat_template=None)
  records = _chat_records(3)
  records[1]["messages"] = MESSAGES
  data_fixtures.write_jsonl(tmp_path / "chat.jsonl", records)
  config = _config(model_dir, str(tmp_path / "chat.jsonl"), chat_template="mistral")
  config.data.tokenize_batch_size = 4
  it = make_train_iterator(
      config.data,
      load_tokenizer(model_dir),
      seq_len=64,
      global_batch_size=1,
      seed=0,
  )
  with pytest.raises(chat_templates.ChatTemplateError) as e:
    next(it)
  message = str(e.value)
  assert "\n" not in message
  assert message.startswith(f"{tmp_path / 'chat.jsonl'}:2: chat template failed"), message
  assert "Conversation roles must alternate" in message


def test_a_roles_chat_template_is_checked_and_a_student_role_takes_the_runs():
  from langshift.recipes import roles

  config = base_config()
  assert roles.student_role(config, "/m").chat_template == ""  # "tokenizer": the checkpoint's
  config.data.chat_template = "mistral"
  role = roles.student_role(config, "/m", max_new_tokens=4)
  assert (role.backend, role.hf_dir, role.chat_template) == ("local", "/m", "mistral")
  bad = roles.role_config(backend="openai", base_url="http://h/v1", chat_template="mistrl")
  with pytest.raises(ValueError, match=r"^judge\.chat_template: unknown chat template 'mistrl'"):
    roles.check_role(bad, "judge")
