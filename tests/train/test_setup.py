"""`setup` resolves the whole run before the first step: bad settings and missing files fail
there, naming the key, and leave the workdir untouched; evaluations run when their entry says."""

import os
import sys

import pytest
from train_testing import SyntheticBatches, read_metrics, tiny_config

from langshift.evaluation.evaluators import Evaluator, perplexity_eval, suite_eval
from langshift.train.trainer import every, setup, train_and_evaluate

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "data"))
import data_fixtures  # noqa: E402


@pytest.fixture(scope="module")
def text(tmp_path_factory):
  root = tmp_path_factory.mktemp("setup")
  tokenizer = data_fixtures.write_bpe_tokenizer(root / "tok")
  heldout = data_fixtures.write_jsonl(
      root / "held.jsonl", [{"text": t} for t in data_fixtures.CORPUS[:10]]
  )
  return dict(tokenizer=tokenizer, heldout=heldout)


def _config(text, **evals):
  config = tiny_config(steps=5)
  config.model.vocab_size = 512
  config.tokenizer = text["tokenizer"]
  for name, entry in evals.items():
    config.evals[name] = entry
  return config


def _heldout(text, path=None, **fields):
  entry = perplexity_eval(**fields)
  entry.data.sources.held = dict(path=path or text["heldout"], format="jsonl")
  return entry


def _iter(config):
  return SyntheticBatches(
      config.train.global_batch_size, config.train.seq_len, config.model.vocab_size
  )


def test_every_is_periodic_and_fires_at_the_last_step():
  assert [s for s in range(1, 8) if every(s, 3, 7)] == [3, 6, 7]
  assert [s for s in range(1, 8) if every(s, 0, 7)] == [7]
  assert [s for s in range(1, 8) if every(s, 3, 7, last=False)] == [3, 6]
  assert [s for s in range(1, 8) if every(s, 0, 7, last=False)] == []


@pytest.mark.parametrize(
    "entry,error,match",
    [
        (
            lambda t: suite_eval(suite="mini_darumeu"),
            FileNotFoundError,
            r"config\.evals\.bench\.suite='mini_darumeu': no suite file",
        ),
        (
            lambda t: _heldout(t, path="/nonexistent/held.jsonl"),
            ValueError,
            r"config\.evals\.bench\.data: source held: path '/nonexistent/held\.jsonl' "
            r"matched no files",
        ),
        (
            lambda t: dict(kind="perplexty"),
            ValueError,
            r"config\.evals\.bench\.kind='perplexty'; expected one of "
            r"\('perplexity', 'suite', 'response', 'lm_eval_tasks'\)",
        ),
        (
            lambda t: dict(kind="suite", suite="handbook_mini", every_step=3),
            ValueError,
            r"unknown field\(s\) \['every_step'\] in config\.evals\.bench",
        ),
        (
            lambda t: suite_eval(suite="handbook_mini", tasks="*_arr"),
            ValueError,
            r"config\.evals\.bench\.tasks='\*_arr' matches no task of 'handbook_mini'",
        ),
        (
            lambda t: suite_eval(suite="handbook_mini", every_steps=-1),
            ValueError,
            r"config\.evals\.bench\.every_steps=-1",
        ),
    ],
)
def test_bad_evaluation_entry_fails_before_the_first_step(text, tmp_path, entry, error, match):
  config = _config(text, bench=entry(text))
  with pytest.raises(error, match=match):
    train_and_evaluate(config, str(tmp_path / "w"), train_iter=_iter(config))
  assert not (tmp_path / "w").exists()  # nothing written, nothing trained


def test_two_evaluations_writing_the_same_metrics_are_refused(text, tmp_path):
  config = _config(text, a=_heldout(text), b=_heldout(text))
  with pytest.raises(
      ValueError,
      match=r"config\.evals\.b and config\.evals\.a both write " r"perplexity metrics under 'eval'",
  ):
    setup(config, str(tmp_path / "w"), train_iter=_iter(config))
  config.evals.b.prefix = "eval_b"
  assert len(setup(config, str(tmp_path / "w"), train_iter=_iter(config)).evaluators) == 2


def test_architecture_keys_with_init_from_hf_are_an_error(tmp_path):
  config = tiny_config(steps=1)
  config.init_from_hf = str(tmp_path)
  with pytest.raises(
      ValueError, match=r"^config\.model\.hidden_size=32 is set together with " r"init_from_hf"
  ):
    setup(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


class _Counting(Evaluator):
  """The evaluator interface as a test double: records the step of each call."""

  def __init__(self, every_steps, at_start):
    self.name, self.every_steps, self.at_start, self.metric = "count", every_steps, at_start, "x"
    self.calls, self.steps = 0, []

  def __call__(self, params, step=None):
    self.calls += 1
    self.steps.append(step)
    return {"eval_test/calls": float(self.calls)}


def test_evaluations_run_at_start_every_n_steps_and_at_the_end(text, tmp_path):
  config = _config(text, heldout=_heldout(text, every_steps=2, max_batches=1))
  counting = _Counting(every_steps=0, at_start=False)
  summary = train_and_evaluate(config, str(tmp_path / "a"), train_iter=_iter(config))
  rows = read_metrics(tmp_path / "a")
  assert [r["step"] for r in rows if "eval/perplexity" in r] == [0, 2, 4, 5]
  before, after = summary["eval/perplexity_before"], summary["eval/perplexity_after"]
  assert before == rows[0]["eval/perplexity"] and after == rows[-1]["eval/perplexity"]
  assert before != after  # measured on the trained params, not the initial ones
  summary = train_and_evaluate(
      _config(text), str(tmp_path / "b"), train_iter=_iter(config), evaluators=[counting]
  )
  assert counting.calls == 1 and summary["eval_test/calls_after"] == 1.0
  assert counting.steps == [5]  # the engine tells an evaluation its step (it names samples)
  assert [r["step"] for r in read_metrics(tmp_path / "b") if "eval_test/calls" in r] == [5]


def test_suite_tasks_are_chosen_by_name_pattern(text, tmp_path):
  config = _config(text, ar=suite_eval(suite="handbook_mini", tasks="*_ar, language_id"))
  (suite,) = setup(config, str(tmp_path / "w"), train_iter=_iter(config)).evaluators
  assert [t.name for t in suite.suite.tasks] == [
      "copy_sentence_ar",
      "copy_paragraph_ar",
      "translation_ar",
      "continuation_ar",
      "language_id",
      "lang_alignment_ar",
  ]
