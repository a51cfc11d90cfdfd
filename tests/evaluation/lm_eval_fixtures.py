"""A tiny Hugging Face checkpoint and three lm-eval task YAMLs over local JSON-lines files (a
multiple-choice task, a rolling-perplexity task, a generate_until task with a stop string)."""

import json
import os

import lm_eval
import tokenizers
import torch
import transformers
from lm_eval.tasks import TaskManager
from tokenizers import decoders, models, pre_tokenizers, trainers

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CORPUS = [
    "Question: is it raining? Answer: yes",
    "Question: is the sun out? Answer: no",
    "The server writes its log every day.",
    "The quick brown fox jumps over the lazy dog.",
] * 4
LONG_TEXT = " ".join(["The server answers requests and writes the log."] * 12)
MAX_LENGTH = 48  # rolling windows: the long text is several windows
MAX_GEN_TOKS = 10
TASKS = ("ls_mc", "ls_ppl", "ls_gen")


def save_checkpoint(path):
  """A byte-level BPE vocabulary and a random Llama with sharp distributions (few argmax ties)."""
  tok = tokenizers.Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  tok.train_from_iterator(
      CORPUS,
      trainers.BpeTrainer(
          vocab_size=200,
          show_progress=False,
          special_tokens=["<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"],
          initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
      ),
  )
  tok.save(str(path / "tokenizer.json"))
  (path / "tokenizer_config.json").write_text(
      json.dumps(
          {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "chat_template": CHATML}
      )
  )
  torch.manual_seed(0)
  config = transformers.LlamaConfig(
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
  model = transformers.LlamaForCausalLM(config)
  with torch.no_grad():
    for p in model.parameters():
      p.add_(torch.randn_like(p) * 0.5)
  model.save_pretrained(str(path))


def write_jsonl(path, rows):
  path.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")


def write_tasks(root, stop: str):
  """Three lm-eval task YAMLs over JSON-lines files (`dataset_path: json`)."""
  questions = ["is it raining?", "is the sun out?", "is it late?", "is it cold?"]
  write_jsonl(
      root / "mc.jsonl",
      [
          {
              "question": f"Question: {q} Answer:",
              "choices": [" yes", " no", " maybe"],
              "gold": i % 3,
          }
          for i, q in enumerate(questions)
      ],
  )
  write_jsonl(root / "ppl.jsonl", [{"text": LONG_TEXT}, {"text": CORPUS[3]}])
  write_jsonl(
      root / "gen.jsonl",
      [{"prompt": f"Question: {q} Answer:", "answer": " yes"} for q in questions]
      + [{"prompt": "The server", "answer": " writes"}],
  )

  def data(name):
    return f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {root / name}\n"

  (root / "ls_mc.yaml").write_text(
      "task: ls_mc\n" + data("mc.jsonl") + "test_split: test\noutput_type: multiple_choice\n"
      "doc_to_text: question\ndoc_to_choice: choices\ndoc_to_target: gold\n"
      "metric_list:\n  - metric: acc\n  - metric: acc_norm\n"
  )
  (root / "ls_ppl.yaml").write_text(
      "task: ls_ppl\n" + data("ppl.jsonl") + "test_split: test\n"
      "output_type: loglikelihood_rolling\ndoc_to_text: ''\ndoc_to_target: text\n"
      "metric_list:\n  - metric: word_perplexity\n  - metric: byte_perplexity\n"
      "  - metric: bits_per_byte\n"
  )
  (root / "ls_gen.yaml").write_text(
      "task: ls_gen\n" + data("gen.jsonl") + "test_split: test\noutput_type: generate_until\n"
      "doc_to_text: prompt\ndoc_to_target: answer\n"
      f"generation_kwargs:\n  until: [{json.dumps(stop)}]\n  max_gen_toks: {MAX_GEN_TOKS}\n"
      "  do_sample: false\nmetric_list:\n  - metric: exact_match\n"
  )


def evaluate(model, root, tasks=TASKS, **kwargs):
  os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
  return lm_eval.simple_evaluate(
      model=model,
      tasks=list(tasks),
      task_manager=TaskManager(include_path=str(root)),
      log_samples=True,
      bootstrap_iters=0,
      **kwargs,
  )


def samples(out, task):
  return sorted(out["samples"][task], key=lambda r: r["doc_id"])
