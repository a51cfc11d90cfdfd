"""langshift as an lm-evaluation-harness model type: on a tiny checkpoint and three local task
YAMLs (multiple choice, rolling perplexity, generate_until with a stop sequence), every metric
equals lm-eval's own `hf` backend on the same checkpoint: log-likelihood metrics within 1e-4,
greedy generations identical.
"""

import glob
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("lm_eval")

from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval_fixtures import (  # noqa: E402
    LONG_TEXT,
    MAX_GEN_TOKS,
    MAX_LENGTH,
    evaluate,
    samples,
    save_checkpoint,
    write_tasks,
)

from langshift.evaluation.lm_eval_backend import LangshiftLM, registered  # noqa: E402


@pytest.mark.parametrize("chat", [False, True], ids=["plain", "chat_template"])
def test_every_metric_equals_lm_eval_hf_backend(tmp_path, chat):
  ckpt = tmp_path / "ckpt"
  ckpt.mkdir()
  save_checkpoint(ckpt)
  assert registered() is LangshiftLM
  ours = LangshiftLM(pretrained=str(ckpt), batch_size=4, max_length=MAX_LENGTH)

  # A stop string that the greedy answers contain after their first character, so that cutting
  # at it matters.
  prompts = ["Question: is it late? Answer:", "The server"]
  if chat:
    prompts = [ours.apply_chat_template([{"role": "user", "content": p}]) for p in prompts]
    assert prompts[1] == "<|im_start|>user\nThe server<|im_end|>\n<|im_start|>assistant\n"
  raw = ours.generate_until(
      [
          Instance("generate_until", {}, (p, {"until": [], "max_gen_toks": MAX_GEN_TOKS}), i)
          for i, p in enumerate(prompts)
      ]
  )
  stop = max({c for t in raw for c in t[1:]}, key=lambda c: sum(c in t[1:] for t in raw))
  root = tmp_path / "tasks"
  root.mkdir()
  write_tasks(root, stop)

  mine = evaluate(ours, root, apply_chat_template=chat)
  theirs = evaluate(
      "hf",
      root,
      apply_chat_template=chat,
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

  for x, y in zip(samples(mine, "ls_mc"), samples(theirs, "ls_mc"), strict=True):
    assert x["arguments"] == y["arguments"]
    for choice_x, choice_y in zip(x["resps"], y["resps"], strict=True):
      (lp_x, greedy_x), (lp_y, greedy_y) = choice_x[0], choice_y[0]
      assert abs(lp_x - lp_y) <= 1e-4 and greedy_x == greedy_y
  ppl = list(zip(samples(mine, "ls_ppl"), samples(theirs, "ls_ppl"), strict=True))
  assert len(ours.scorer.tok_encode(LONG_TEXT)) > 3 * MAX_LENGTH
  for x, y in ppl:
    # A whole text is hundreds of nats, which `hf` sums in float32 (spacing 3e-5 at 256).
    assert x["resps"][0][0] == pytest.approx(y["resps"][0][0], rel=1e-6, abs=1e-4)
  generations = list(zip(samples(mine, "ls_gen"), samples(theirs, "ls_gen"), strict=True))
  for x, y in generations:
    assert x["arguments"] == y["arguments"]
    assert x["filtered_resps"] == y["filtered_resps"]
  # The stop string cut at least one answer short of what the model went on to write.
  texts = [x["filtered_resps"][0] for x, _ in generations]
  assert len(texts[2]) < len(raw[0]) or len(texts[4]) < len(raw[1]), (texts, raw)


def test_command_line_serves_model_langshift_and_names_an_unknown_task(tmp_path):
  ckpt, root = tmp_path / "ckpt", tmp_path / "tasks"
  ckpt.mkdir()
  root.mkdir()
  save_checkpoint(ckpt)
  write_tasks(root, stop="\n")
  env = dict(os.environ, HF_DATASETS_OFFLINE="1", PYTHONPATH=os.getcwd())

  def run(tasks, *extra):
    return subprocess.run(
        [sys.executable, "-m", "langshift.lm_eval", "--model", "langshift"]
        + ["--model_args", f"pretrained={ckpt},max_length={MAX_LENGTH}", "--tasks", tasks]
        + ["--include_path", str(root), *extra],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )

  done = run("ls_mc", "--batch_size", "4", "--output_path", str(tmp_path / "out"))
  assert done.returncode == 0, done.stderr[-2000:]
  (result,) = glob.glob(str(tmp_path / "out" / "**" / "results_*.json"), recursive=True)
  with open(result) as f:
    acc = json.load(f)["results"]["ls_mc"]["acc,none"]
  lm = LangshiftLM(pretrained=str(ckpt), max_length=MAX_LENGTH)
  assert acc == evaluate(lm, root, tasks=["ls_mc"])["results"]["ls_mc"]["acc,none"]

  refused = run("ls_mcc")
  assert refused.returncode == 1
  assert refused.stderr.strip().splitlines()[-1] == "langshift.lm_eval: Tasks not found: ls_mcc"


def test_on_a_mesh_of_eight_devices_the_answers_are_the_one_device_ones(tmp_path):
  save_checkpoint(tmp_path)
  one = LangshiftLM(pretrained=str(tmp_path), batch_size=8, max_length=MAX_LENGTH)
  eight = LangshiftLM(pretrained=str(tmp_path), batch_size=8, max_length=MAX_LENGTH, fsdp=8)
  assert eight.model.mesh.devices.size == 8
  leaf = eight.model.params["embed_tokens"]["embedding"]
  assert not leaf.sharding.is_fully_replicated
  pairs = [("Question: is it late? Answer:", c) for c in (" yes", " no", " maybe")]
  pairs += [("", "The server writes its log every day.")]
  lls = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]
  for (a, greedy_a), (b, greedy_b) in zip(one.loglikelihood(lls), eight.loglikelihood(lls)):
    assert abs(a - b) <= 1e-4 and greedy_a == greedy_b
  gen = [
      Instance("generate_until", {}, (p, {"until": ["\n"], "max_gen_toks": 6}), i)
      for i, p in enumerate(["Question: is it late? Answer:", "The server", "The quick"])
  ]
  assert one.generate_until(gen) == eight.generate_until(gen)
