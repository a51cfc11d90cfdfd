import json

import tokenizers
import torch
import transformers
from tokenizers import decoders, models, pre_tokenizers, trainers

from langshift.evaluation.run import evaluate_model_dir

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _save_tiny_checkpoint(path):
  tok = tokenizers.Tokenizer(models.BPE(unk_token="<unk>"))
  tok.pre_tokenizer, tok.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
  tok.train_from_iterator(
      ["A B C the answer is", "Question: which? Answer: B"] * 3,
      trainers.BpeTrainer(
          vocab_size=64, show_progress=False, special_tokens=["<pad>", "<s>", "</s>", "<unk>"]
      ),
  )
  tok.save(str(path / "tokenizer.json"))
  (path / "tokenizer_config.json").write_text(
      json.dumps({"bos_token": "<s>", "eos_token": "</s>", "chat_template": CHATML})
  )
  torch.manual_seed(0)
  cfg = transformers.LlamaConfig(
      vocab_size=tok.get_vocab_size(),
      hidden_size=32,
      intermediate_size=64,
      num_hidden_layers=2,
      num_attention_heads=4,
      num_key_value_heads=2,
      max_position_embeddings=256,
      bos_token_id=1,
      eos_token_id=2,
      pad_token_id=0,
  )
  transformers.LlamaForCausalLM(cfg).save_pretrained(str(path))


def test_cli_evaluates_a_saved_checkpoint_on_a_suite(tmp_path):
  model_dir = tmp_path / "model"
  model_dir.mkdir()
  _save_tiny_checkpoint(model_dir)
  (tmp_path / "mc.jsonl").write_text(
      "".join(
          json.dumps({"prompt": f"Question: which {i}? Answer:", "outputs": "B"}) + "\n"
          for i in range(3)
      )
  )
  (tmp_path / "suite.json").write_text(
      json.dumps(
          {
              "name": "s",
              "tasks": [
                  {
                      "name": "mc",
                      "type": "choice",
                      "path": "mc.jsonl",
                      "choices": ["A", "B", "C"],
                      "num_fewshot": 1,
                  }
              ],
          }
      )
  )
  settings = {"eval/settings/" + k for k in ("bos", "max_length", "chat", "num_fewshot")}
  for protocol in ("base", "auto"):  # auto -> instruct: the tokenizer has a chat template
    out = evaluate_model_dir(str(model_dir), str(tmp_path / "suite.json"), protocol=protocol)
    assert set(out) == {"eval/mc/accuracy", "eval/mc/acc_norm", "eval/micro_avg"} | settings
    assert out["eval/mc/accuracy"] in (0.0, 1 / 3, 2 / 3, 1.0)
    assert out["eval/settings/chat"] == float(protocol == "auto")
  # The tokenizer adds no BOS: by default none is prepended; --bos=true forces it, and the
  # setting is written with the metrics. --num_fewshot overrides the task's count.
  assert out["eval/settings/bos"] == 0.0
  samples = []
  forced = evaluate_model_dir(
      str(model_dir),
      str(tmp_path / "suite.json"),
      protocol="base",
      bos="true",
      num_fewshot=2,
      samples=samples,
  )
  assert forced["eval/settings/bos"] == 1.0 and forced["eval/settings/num_fewshot"] == 2.0
  assert samples[0]["prompt"].count("Answer: B") == 2


def test_a_base_checkpoint_is_evaluated_in_the_chat_template_given(tmp_path):
  # A base checkpoint has no template: auto means the base protocol, unless --chat_template
  # gives one (a langshift export carries its run's already).
  model_dir = tmp_path / "model"
  model_dir.mkdir()
  _save_tiny_checkpoint(model_dir)
  (model_dir / "tokenizer_config.json").write_text(
      json.dumps({"bos_token": "<s>", "eos_token": "</s>"})
  )
  (tmp_path / "mc.jsonl").write_text(
      json.dumps({"prompt": "Question: which? Answer:", "outputs": "B"}) + "\n"
  )
  task = {"name": "mc", "type": "choice", "path": "mc.jsonl", "choices": ["A", "B", "C"]}
  (tmp_path / "suite.json").write_text(json.dumps({"name": "s", "tasks": [task]}))
  suite = str(tmp_path / "suite.json")
  assert evaluate_model_dir(str(model_dir), suite)["eval/settings/chat"] == 0.0
  samples = []
  out = evaluate_model_dir(str(model_dir), suite, chat_template="chatml", samples=samples)
  assert out["eval/settings/chat"] == 1.0
  assert samples[0]["prompt"].startswith("<|im_start|>user\n")
