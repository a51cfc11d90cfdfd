"""The independent reference: EleutherAI's lm-evaluation-harness (`hf` backend, torch) and
langshift score the same tiny checkpoint on the same tasks; per-example log-likelihoods agree to
1e-4 nats and predictions are equal.

The tasks are built to exercise every convention: Russian yes/no labels that start with the same
byte token (first-token scoring ties them), prompts that end in a space (the space moves into the
answer), one-shot prompts, the chat template, and a perplexity text several times longer than the
window (rolling windows, no cut).
"""

import json

import pytest
import tokenizers
import torch
import transformers
from tokenizers import decoders, models, pre_tokenizers, trainers

from langshift.evaluation.lm_eval_compare import compare, run_langshift, run_lm_eval
from langshift.evaluation.tasks import Suite, load_suite

pytest.importorskip("lm_eval")

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CORPUS = [
    "Вопрос: идёт ли дождь? Ответ: Да",
    "Вопрос: светит ли солнце? Ответ: Нет",
    "Question: which one? Answer: 10 11 12",
    "The quick brown fox jumps over the lazy dog.",
] * 4
LONG_TEXT = " ".join(
    ["Сервер обрабатывает запросы клиентов и записывает журнал.", "The log grows every day."] * 8
)
MAX_LENGTH = 32


def save_checkpoint(path, *, adds_bos: bool):
  """A byte-level BPE vocabulary (labels are several byte tokens) and a random Llama."""
  tok = tokenizers.Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  tok.train_from_iterator(
      CORPUS,
      trainers.BpeTrainer(
          vocab_size=300,
          show_progress=False,
          special_tokens=["<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"],
          initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
      ),
  )
  if adds_bos:  # Llama-style: the post-processor writes BOS
    tok.post_processor = tokenizers.processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", 1)]
    )
  tok.save(str(path / "tokenizer.json"))
  (path / "tokenizer_config.json").write_text(
      json.dumps({"bos_token": "<s>", "eos_token": "</s>", "chat_template": CHATML})
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
      p.add_(torch.randn_like(p) * 0.5)  # sharp distributions: predictions are not coin flips
  model.save_pretrained(str(path))
  return tok


def _write(path, rows):
  path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
  root = tmp_path_factory.mktemp("suite")
  yes_no = ["Да", "Нет"]
  questions = ["идёт ли дождь?", "светит ли солнце?", "холодно ли?", "поздно ли?", "тихо ли?"]
  _write(
      root / "yes_no.jsonl",
      [
          {"prompt": f"Вопрос: {q} Ответ:", "choices": yes_no, "outputs": yes_no[i % 2]}
          for i, q in enumerate(questions)
      ],
  )
  numbers = ["10", "11", "12"]
  _write(
      root / "numbers.jsonl",  # prompts end in a space: it belongs to the answer
      [
          {"prompt": f"Question: which one {i}? Answer: ", "choices": numbers, "answer": i % 3}
          for i in range(4)
      ],
  )
  _write(root / "long.jsonl", [{"text": LONG_TEXT, "lang": "ru"}, {"text": "Да", "lang": "ru"}])
  tasks = [
      {"name": "yes_no", "type": "choice", "path": "yes_no.jsonl"},
      {"name": "numbers", "type": "choice", "path": "numbers.jsonl"},
      {"name": "long", "type": "perplexity", "path": "long.jsonl"},
  ]
  (root / "suite.json").write_text(json.dumps({"name": "ref", "tasks": tasks}))
  suite = load_suite(str(root / "suite.json"))
  from langshift.evaluation.lm_eval_compare import comparable_suite

  return comparable_suite(suite)


@pytest.mark.parametrize(
    "adds_bos,chat,num_fewshot",
    [(False, False, 0), (False, False, 1), (True, False, 1), (False, True, 0)],
    ids=["base", "one_shot", "bos_tokenizer", "chat"],
)
def test_log_likelihoods_and_predictions_match_lm_eval(
    tmp_path, suite: Suite, adds_bos, chat, num_fewshot
):
  tok = save_checkpoint(tmp_path, adds_bos=adds_bos)
  # The premise of the yes/no task: both labels start with the same byte token.
  assert (
      tok.encode("Да", add_special_tokens=False).ids[0]
      == tok.encode("Нет", add_special_tokens=False).ids[0]
  )
  assert len(tok.encode(LONG_TEXT).ids) > 3 * MAX_LENGTH
  kwargs = dict(chat=chat, num_fewshot=num_fewshot, batch_size=4, max_length=MAX_LENGTH)
  metrics, ours = run_langshift(str(tmp_path), suite, **kwargs)
  theirs = run_lm_eval(str(tmp_path), suite, **kwargs)
  rows = {r["task"]: r for r in compare(suite, ours, theirs)}
  assert metrics["eval/settings/bos"] == float(adds_bos)
  for name, row in rows.items():
    assert row["n"] == len(theirs[name]) > 0
    if name == "long":
      # A whole text's log-likelihood is hundreds of nats, which lm-eval sums in float32 (spacing
      # 6e-5 at 512): compare relatively there, absolutely for the short answers.
      assert row["max_rel_ll"] <= 1e-6 and row["min_ll"] < -100, row
    else:
      assert row["max_abs_ll"] <= 1e-4, row
    assert row.get("preds_differ", 0) == 0, row
  # Both harnesses saw the same prompts.
  for name in ("yes_no", "numbers"):
    assert [s["prompt"] for s in ours[name]] == [t["prompt"] for t in theirs[name]]
  # Perplexity covers every token of the long text (several windows, nothing cut).
  assert ours["long"][0]["tokens"] == len(tok.encode(LONG_TEXT).ids)  # BOS too when it adds one
