"""InsCP samples: question/answer records split into one sample each, wrapped behind an empty user
turn, and selected by a scores file aligned with the samples (bad scores files are one-line
errors)."""

import numpy as np
import pytest
from data_fixtures import write_jsonl

from langshift.data import config as config_lib
from langshift.data import pipeline, sources

QA = [{"prompt": f"question {i}?", "response": f"answer {i}."} for i in range(4)]


def _qa_config(path, **fields):
  cfg = config_lib.default_data_config()
  cfg.packing = "none"
  cfg.sources.qa = config_lib.source_config(path=str(path), qa_split=True, **fields)
  return cfg


def _rows(cfg, tokenizer, seq_len=32):
  batches = pipeline.make_eval_batches(cfg, tokenizer, seq_len=seq_len, global_batch_size=4)
  rows = [
      tokenizer.decode(r[s > 0]) for b in batches for r, s in zip(b["inputs"], b["segment_ids"])
  ]
  return [r for r in rows if r]


def test_each_question_and_each_answer_is_its_own_sample(tmp_path, bpe_tokenizer):
  write_jsonl(tmp_path / "qa.jsonl", QA)
  src = sources.open_source(config_lib.resolve_sources(_qa_config(tmp_path / "qa.jsonl"))[0])
  assert len(src) == 8
  assert [src[i][1]["text"] for i in range(4)] == [
      "question 0?",
      "answer 0.",
      "question 1?",
      "answer 1.",
  ]
  assert src[1][0].endswith("qa.jsonl:1 (answer)")
  # Through the pipeline with the InsCP wrapper: every row is one sample as the assistant reply
  # behind an empty user turn, the question and the answer never in one sample.
  cfg = _qa_config(tmp_path / "qa.jsonl", template="inscp")
  rows = _rows(cfg, bpe_tokenizer)
  assert len(rows) == 8
  for row, text in zip(rows, [t for r in QA for t in (r["prompt"], r["response"])]):
    user, assistant = row.split("assistant")
    assert "user" in user and "question" not in user and "answer" not in user
    assert assistant == f"<|end_header_id|>\n\n{text}<|eot_id|>"


def test_scores_align_with_the_samples(tmp_path, bpe_tokenizer):
  write_jsonl(tmp_path / "qa.jsonl", QA)
  # Questions score high, answers low: a bound of 15 keeps only the answers.
  np.save(tmp_path / "s.npy", np.asarray([40.0, 5.0] * 4))
  cfg = _qa_config(
      tmp_path / "qa.jsonl", perplexity_scores=str(tmp_path / "s.npy"), max_perplexity=15.0
  )
  assert [r.strip() for r in _rows(cfg, bpe_tokenizer)] == [
      f"<|begin_of_text|>answer {i}.<|eot_id|>" for i in range(4)
  ]


@pytest.mark.parametrize(
    "scores, message",
    [
        (np.full(4, 1.0), r"s\.npy hold 4 scores for a source of 8 records"),
        (np.asarray([1.0, np.nan] * 4), r"s\.npy: 4 NaN scores \(first at record 1\)"),
    ],
)
def test_bad_scores_files_are_one_line_errors(tmp_path, bpe_tokenizer, scores, message):
  write_jsonl(tmp_path / "qa.jsonl", QA)
  np.save(tmp_path / "s.npy", scores)
  cfg = _qa_config(
      tmp_path / "qa.jsonl", perplexity_scores=str(tmp_path / "s.npy"), max_perplexity=15.0
  )
  with pytest.raises(ValueError, match=r"source qa: perplexity scores .*" + message):
    _rows(cfg, bpe_tokenizer)


def test_a_record_without_the_answer_field_is_an_error_naming_it(tmp_path):
  write_jsonl(tmp_path / "qa.jsonl", [{"prompt": "q?", "answer": "wrong field"}])
  (src,) = config_lib.resolve_sources(_qa_config(tmp_path / "qa.jsonl"))
  records = sources.open_source(src)
  with pytest.raises(
      sources.RecordError, match=r"qa\.jsonl:1: qa_split needs a string field 'response'"
  ):
    records[1]
  assert sources.open_source(src, on_bad_record="skip")[1][1] is None
