import dataclasses
import json

import numpy as np
import pytest

from langshift.evaluation.harness import (
    choice_scores,
    choice_token_ids,
    run_choice_task,
    surface_variants,
)
from langshift.evaluation.prompts import build_prompts, fewshot_prompt, select_shots
from langshift.evaluation.scoring import Scored, split_trailing_whitespace
from langshift.evaluation.tasks import Example, TaskSpec, example_from_record, load_examples

VOCAB = {"A": 10, "B": 11, "C": 12, " A": 20, " B": 21, " C": 22, "a": 30, "b": 31}


def encode(text):
  return [VOCAB[text]] if text in VOCAB else [99, 98]


class PlantedScorer:
  """First-token scoring: most next-token mass on " B" (a surface variant, not the bare label);
  the bare "A" gets more than the bare "B", so only max-over-variants finds the answer."""

  def __init__(self):
    self.prompts = []

  def encode(self, text):
    return encode(text)

  def render_chat(self, messages):
    return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

  def next_token_logprobs(self, prompts):
    self.prompts.extend(prompts)
    row = np.full(100, -10.0)
    row[VOCAB["A"]], row[VOCAB["B"]], row[VOCAB[" B"]] = -1.0, -3.0, -0.2
    return np.tile(row, (len(prompts), 1))


class ContinuationScorer:
  """Whole-continuation scoring with planted log-likelihoods per answer text; tokens are bytes
  (so "Да" and "Нет" share their first byte) unless `fold_case` makes "A" and "a" the same."""

  def __init__(self, table, fold_case=False):
    self.table, self.fold_case, self.pairs = table, fold_case, []

  def render_chat(self, messages):
    return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

  def encode_pair(self, context, continuation):
    self.pairs.append((context, continuation))
    context, continuation = split_trailing_whitespace(context, continuation)
    fold = str.lower if self.fold_case else str
    return list(context.encode()), list(fold(continuation).encode())

  def loglikelihood_tokens(self, encoded):
    return [Scored(self.table[bytes(c).decode()], len(c), False) for _, c in encoded]


def _write(path, rows):
  path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")


def test_surface_variants_and_token_ids():
  assert surface_variants("a") == ("a", " a", "A", " A")
  assert choice_token_ids(encode, "A") == (10, 20, 30)
  with pytest.raises(ValueError, match="answer label 'zz' has no single-token spelling"):
    choice_token_ids(encode, "zz")
  row = np.zeros(100)
  row[[10, 20, 11]] = [-2.0, -0.5, -1.0]
  np.testing.assert_allclose(choice_scores(row, [(10, 20), (11,)]), [-0.5, -1.0])


def test_first_token_scoring_picks_the_planted_answer(tmp_path):
  path = tmp_path / "t.jsonl"
  rows = [{"prompt": f"Q{i}?", "outputs": "B"} for i in range(3)]
  rows.append({"prompt": "Q3?", "choices": ["A", "B"], "answer": 0})  # index gold, gold is A
  _write(path, rows)
  spec = TaskSpec(
      name="t", type="choice", path=str(path), choices=("A", "B", "C"), scoring="first_token"
  )
  examples = load_examples(spec)
  assert examples[3].target == "A" and examples[3].choices == ("A", "B")
  scorer = PlantedScorer()
  assert run_choice_task(spec, examples, scorer, chat=False) == {"accuracy": 0.75}
  assert scorer.prompts[0] == "Q0?"
  run_choice_task(spec, examples, scorer, chat=True)
  assert scorer.prompts[-1] == "<user>Q3?<assistant>"
  # Labels that share a token can only tie: an error naming them.
  clash = dataclasses.replace(spec, choices=("A", "a"))
  with pytest.raises(ValueError, match=r"task t: answer labels 'A' and 'a' are scored as the same"):
    run_choice_task(clash, [Example("Q", "A", ("A", "a"))], scorer, chat=False)


def test_whole_answer_scoring_accuracy_and_acc_norm():
  # "Да" and "Нет" start with the same byte: first-token scoring cannot tell them apart. The whole
  # answer can: "Да" is likelier (accuracy), "Нет" likelier per character (acc_norm).
  spec = TaskSpec(name="yn", type="choice", path="-", choices=("Да", "Нет"))
  scorer = ContinuationScorer({" Да": -2.0, " Нет": -2.4})
  examples = [Example("Идёт дождь? Ответ:", "Да", ("Да", "Нет"))] * 3
  assert run_choice_task(spec, examples, scorer, chat=False) == {"accuracy": 1.0, "acc_norm": 0.0}
  assert scorer.pairs[:2] == [("Идёт дождь? Ответ:", " Да"), ("Идёт дождь? Ответ:", " Нет")]
  samples = []
  run_choice_task(spec, examples[:1], scorer, chat=False, samples=samples)
  assert samples[0]["loglikelihoods"] == [-2.0, -2.4] and samples[0]["pred_norm"] == 1
  # Instruct protocol: the answer follows the assistant prompt with no delimiter.
  chat_scorer = ContinuationScorer({"Да": -2.0, "Нет": -2.4})
  run_choice_task(spec, examples[:1], chat_scorer, chat=True)
  assert chat_scorer.pairs[0] == ("<user>Идёт дождь? Ответ:<assistant>", "Да")


def test_labels_that_tokenize_identically_are_an_error():
  spec = TaskSpec(name="t", type="choice", path="-", choices=("A", "a"))
  scorer = ContinuationScorer({" a": -1.0}, fold_case=True)
  with pytest.raises(ValueError, match=r"task t: answer labels 'A' and 'a' are scored as the same"):
    run_choice_task(spec, [Example("Q:", "A", ("A", "a"))], scorer, chat=False)


def test_records_in_mera_layout_fill_the_instruction():
  spec = TaskSpec(name="t", type="choice", path="-", choices=("1", "2"))
  ex = example_from_record(
      {
          "instruction": "Premise: {premise}\nAnswer:",
          "inputs": {"premise": "It rained."},
          "outputs": "2",
          "meta": {"id": 7},
      },
      spec,
  )
  assert ex.prompt == "Premise: It rained.\nAnswer:" and ex.target == "2" and ex.id == 7


def test_bad_records_name_the_file_and_line(tmp_path):
  path = tmp_path / "t.jsonl"
  path.write_text('{"prompt": "Q", "outputs": "A"}\n{"prompt": "Q", "outputs": "D"}\n')
  spec = TaskSpec(name="t", type="choice", path=str(path), choices=("A", "B"))
  with pytest.raises(ValueError, match=r"t\.jsonl line 2: task t: gold 'D' is not among choices"):
    load_examples(spec)
  path.write_text('{"prompt": "Q"\n')
  with pytest.raises(ValueError, match=r"t\.jsonl line 1: malformed JSON"):
    load_examples(spec)
  with pytest.raises(ValueError, match=r"task t: scoring='first'; expected one of"):
    TaskSpec(name="t", type="choice", path="-", scoring="first")


def test_k_shot_prompt_layout_and_shot_selection():
  spec = TaskSpec(name="t", type="generation", path="-", num_fewshot=2, metric="exact_match")
  pool = [Example(prompt=f"Q{i}:", target=f"a{i}") for i in range(5)]
  shots = select_shots(pool, 2, index=1, seed=0, same_pool=True)
  assert len(shots) == 2 and pool[1] not in shots
  assert shots == select_shots(pool, 2, index=1, seed=0, same_pool=True)  # seeded
  prompt = fewshot_prompt(spec, pool[1], shots)
  a, b = shots
  assert prompt == f"{a.prompt} {a.target}\n\n{b.prompt} {b.target}\n\nQ1:"
  # lm-eval's first_n (the query itself left out) and Darumeru's reversed order.
  assert select_shots(pool, 2, 0, 0, True, "first_n") == [pool[1], pool[2]]
  assert select_shots(pool, 2, 0, 0, False, "first_n_reversed") == [pool[1], pool[0]]
  # A query with a group (an MMLU subject) only gets demonstrations of its group.
  grouped = [dataclasses.replace(e, group="bio" if i % 2 else "law") for i, e in enumerate(pool)]
  assert select_shots(grouped, 3, 1, 0, True, "first_n", query=grouped[1]) == [grouped[3]]
  # Instruct protocol: zero-shot through the chat template unless a count is given.
  render = lambda m: "".join(f"[{t['role']}]{t['content']}" for t in m)
  chat = build_prompts(spec, pool[:1], shots_pool=pool, same_pool=True, render_chat=render)
  assert chat == ["[user]Q0:"]
  multi = build_prompts(
      dataclasses.replace(spec, fewshot_sampler="first_n"),
      pool[:1],
      shots_pool=pool,
      same_pool=True,
      render_chat=render,
      num_fewshot=1,
  )
  assert multi == ["[user]Q1:[assistant]a1[user]Q0:"]


def test_conversation_records_render_for_both_protocols():
  spec = TaskSpec(name="t", type="choice", path="-", choices=("1", "2"), fewshot_sampler="first_n")
  turns = lambda q, a: (
      {"role": "system", "content": "Решай."},
      {"role": "user", "content": q},
      {"role": "assistant", "content": a},
  )
  shot = Example("", "2", ("1", "2"), messages=turns("Q1", "Ответ:"))
  answered = Example("", "1", ("1", "2"), messages=turns("Q2", "Ответ: 1"), answered=True)
  query = Example("", "1", ("1", "2"), messages=turns("Q3", "Ответ:"))
  base = build_prompts(spec, [query], shots_pool=[shot, answered], same_pool=False, num_fewshot=2)
  assert base == ["Решай.\n\nQ1\n\nОтвет: 2\n\nQ2\n\nОтвет: 1\n\nQ3\n\nОтвет:"]
  render = lambda m: "".join(f"[{t['role']}]{t['content']}" for t in m) + "[assistant]"
  chat = build_prompts(spec, [query], shots_pool=[shot], same_pool=False, render_chat=render)
  assert chat == ["[system]Решай.[user]Q3[assistant]Ответ:"]
  # An opened answer that ends without a space takes the delimiter in the instruct protocol too.
  scorer = ContinuationScorer({" 1": -1.0, " 2": -3.0})
  scorer.render_chat = render
  assert run_choice_task(spec, [query], scorer, chat=True)["accuracy"] == 1.0
  assert scorer.pairs[0][1] == " 1"
