import json

import numpy as np

from langshift.evaluation.harness import (
    choice_scores,
    choice_token_ids,
    run_choice_task,
    surface_variants,
)
from langshift.evaluation.prompts import build_prompts, fewshot_prompt, select_shots
from langshift.evaluation.tasks import Example, TaskSpec, example_from_record, load_examples

VOCAB = {"A": 10, "B": 11, "C": 12, " A": 20, " B": 21, " C": 22, "a": 30, "b": 31}


def encode(text):
  return [VOCAB[text]] if text in VOCAB else [99, 98]


class PlantedScorer:
  """Puts most next-token mass on " B" (a surface variant, not the bare label) after any prompt;
  the bare "A" gets more than the bare "B", so only max-over-variants finds the answer."""

  def __init__(self):
    self.prompts = []

  def encode(self, text):
    return encode(text)

  def render_chat(self, messages):
    return "<user>" + messages[-1]["content"] + "<assistant>"

  def next_token_logprobs(self, prompts, chat=False):
    self.prompts.extend(prompts)
    row = np.full(100, -10.0)
    row[VOCAB["A"]], row[VOCAB["B"]], row[VOCAB[" B"]] = -1.0, -3.0, -0.2
    return np.tile(row, (len(prompts), 1))


def test_surface_variants_and_token_ids():
  assert surface_variants("a") == ("a", " a", "A", " A")
  assert choice_token_ids(encode, "A") == (10, 20, 30)
  assert choice_token_ids(encode, "zz") == (99,)  # no single-token form: first token
  row = np.zeros(100)
  row[[10, 20, 11]] = [-2.0, -0.5, -1.0]
  np.testing.assert_allclose(choice_scores(row, [(10, 20), (11,)]), [-0.5, -1.0])


def test_choice_scoring_picks_the_planted_answer(tmp_path):
  path = tmp_path / "t.jsonl"
  rows = [{"prompt": f"Q{i}?", "outputs": "B"} for i in range(3)]
  rows.append({"prompt": "Q3?", "choices": ["A", "B"], "answer": 0})  # index gold, gold is A
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  spec = TaskSpec(name="t", type="choice", path=str(path), choices=("A", "B", "C"))
  examples = load_examples(spec)
  assert examples[3].target == "A" and examples[3].choices == ("A", "B")
  scorer = PlantedScorer()
  assert run_choice_task(spec, examples, scorer, chat=False) == {"accuracy": 0.75}
  assert scorer.prompts[0] == "Q0?"
  run_choice_task(spec, examples, scorer, chat=True)
  assert scorer.prompts[-1] == "<user>Q3?<assistant>"


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


def test_k_shot_prompt_layout_and_shot_selection():
  spec = TaskSpec(name="t", type="generation", path="-", num_fewshot=2, metric="exact_match")
  pool = [Example(prompt=f"Q{i}:", target=f"a{i}") for i in range(5)]
  shots = select_shots(pool, 2, index=1, seed=0, same_pool=True)
  assert len(shots) == 2 and pool[1] not in shots
  assert shots == select_shots(pool, 2, index=1, seed=0, same_pool=True)  # seeded
  prompt = fewshot_prompt(spec, pool[1], shots)
  a, b = shots
  assert prompt == f"{a.prompt} {a.target}\n\n{b.prompt} {b.target}\n\nQ1:"
  # Instruct models: zero-shot through the chat template, whatever num_fewshot says.
  chat = build_prompts(
      spec,
      pool[:1],
      shots_pool=pool,
      same_pool=True,
      render_chat=lambda m: f"[{m[0]['role']}]{m[0]['content']}",
  )
  assert chat == ["[user]Q0:"]
