"""langshift as an lm-evaluation-harness model type: on a tiny checkpoint and three local task
YAMLs (multiple choice, rolling perplexity, generate_until with a stop sequence), every metric
equals lm-eval's own `hf` backend on the same checkpoint: log-likelihood metrics within 1e-4,
greedy generations identical.
"""

import json
import os

import pytest

pytest.importorskip("lm_eval")

import lm_eval  # noqa: E402
import tokenizers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402
from tokenizers import decoders, models, pre_tokenizers, trainers  # noqa: E402

from langshift.evaluation.lm_eval_backend import LangshiftLM, registered  # noqa: E402

CORPUS = [
    "Question: is it raining? Answer: yes",
    "Question: is the sun out? Answer: no",
    "The server writes its log every day.",
    "The quick brown fox jumps over the lazy dog.",
] * 4
LONG_TEXT = " ".join(["The server answers requests and writes the log."] * 12)
MAX_LENGTH = 48  # rolling windows: the long text is several windows
MAX_GEN_TOKS = 10


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
          special_tokens=["<pad>", "<s>", "</s>"],
          initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
      ),
  )
  tok.save(str(path / "tokenizer.json"))
  (path / "tokenizer_config.json").write_text(
      json.dumps({"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"})
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


def _write_jsonl(path, rows):
  path.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")


def write_tasks(root, stop: str):
  """Three lm-eval task YAMLs over JSON-lines files (`dataset_path: json`)."""
  questions = ["is it raining?", "is the sun out?", "is it late?", "is it cold?"]
  _write_jsonl(
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
  _write_jsonl(root / "ppl.jsonl", [{"text": LONG_TEXT}, {"text": CORPUS[3]}])
  _write_jsonl(
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


def _evaluate(model, root, **kwargs):
  os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
  return lm_eval.simple_evaluate(
      model=model,
      tasks=["ls_mc", "ls_ppl", "ls_gen"],
      task_manager=TaskManager(include_path=str(root)),
      log_samples=True,
      bootstrap_iters=0,
      **kwargs,
  )


def _samples(out, task):
  return sorted(out["samples"][task], key=lambda r: r["doc_id"])


def test_every_metric_equals_lm_eval_hf_backend(tmp_path):
  ckpt = tmp_path / "ckpt"
  ckpt.mkdir()
  save_checkpoint(ckpt)
  assert registered() is LangshiftLM
  ours = LangshiftLM(pretrained=str(ckpt), batch_size=4, max_length=MAX_LENGTH)

  # A stop string that the greedy answers contain after their first character, so that cutting
  # at it matters.
  raw = ours.generate_until(
      [
          Instance("generate_until", {}, (p, {"until": [], "max_gen_toks": MAX_GEN_TOKS}), i)
          for i, p in enumerate(["Question: is it late? Answer:", "The server"])
      ]
  )
  stop = max({c for t in raw for c in t[1:]}, key=lambda c: sum(c in t[1:] for t in raw))
  root = tmp_path / "tasks"
  root.mkdir()
  write_tasks(root, stop)

  mine = _evaluate(ours, root)
  theirs = _evaluate(
      "hf",
      root,
      model_args=dict(
          pretrained=str(ckpt), dtype="float32", max_length=MAX_LENGTH, device="cpu", batch_size=4
      ),
  )
  a, b = mine["results"], theirs["results"]
  for task, metrics in (
      ("ls_mc", ("acc", "acc_norm")),
      ("ls_ppl", ("word_perplexity", "byte_perplexity", "bits_per_byte")),
      ("ls_gen", ("exact_match",)),
  ):
    for metric in metrics:
      key = f"{metric},none"
      assert a[task][key] == pytest.approx(b[task][key], rel=1e-4, abs=1e-4), (task, metric)

  for x, y in zip(_samples(mine, "ls_mc"), _samples(theirs, "ls_mc"), strict=True):
    assert x["arguments"] == y["arguments"]
    for choice_x, choice_y in zip(x["resps"], y["resps"], strict=True):
      (lp_x, greedy_x), (lp_y, greedy_y) = choice_x[0], choice_y[0]
      assert abs(lp_x - lp_y) <= 1e-4 and greedy_x == greedy_y
  ppl = list(zip(_samples(mine, "ls_ppl"), _samples(theirs, "ls_ppl"), strict=True))
  assert len(ours.scorer.tok_encode(LONG_TEXT)) > 3 * MAX_LENGTH
  for x, y in ppl:
    # A whole text is hundreds of nats, which `hf` sums in float32 (spacing 3e-5 at 256).
    assert x["resps"][0][0] == pytest.approx(y["resps"][0][0], rel=1e-6, abs=1e-4)
  generations = list(zip(_samples(mine, "ls_gen"), _samples(theirs, "ls_gen"), strict=True))
  for x, y in generations:
    assert x["filtered_resps"] == y["filtered_resps"]
  # The stop string cut at least one answer short of what the model went on to write.
  texts = [x["filtered_resps"][0] for x, _ in generations]
  assert len(texts[2]) < len(raw[0]) or len(texts[4]) < len(raw[1]), (texts, raw)
