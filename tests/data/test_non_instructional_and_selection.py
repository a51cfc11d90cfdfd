"""Midpoint splitter + pair builder (non-instructional FT) and perplexity selection."""

import numpy as np

from langshift.data import examples, formatting, selection
from langshift.recipes.non_instructional import splitting as non_instructional
from langshift.tokenization import chat_templates as ct


def test_midpoint_split_at_word_boundary(bpe_tokenizer):
  text = "The quick brown fox jumps over the lazy dog and keeps running far away today"
  ((ids, offsets),) = bpe_tokenizer.encode_batch_with_offsets([text])
  first, second = non_instructional.midpoint_split(text, offsets)
  assert f"{first} {second}" == text
  assert text.split() == first.split() + second.split()  # no word is cut
  # The cut is the whitespace nearest the middle token.
  middle = offsets[len(offsets) // 2][0]
  spaces = [i for i, c in enumerate(text) if c == " "]
  assert abs(len(first) - middle) == min(abs(s - middle) for s in spaces)
  n_first = len(bpe_tokenizer.encode(first))
  assert abs(n_first - len(ids) / 2) <= 3


def test_midpoint_split_without_spaces_cuts_at_a_token():
  text = "敏捷的棕色狐狸跳過了懶狗"
  offsets = [(i, i + 1) for i in range(len(text))]
  assert non_instructional.midpoint_split(text, offsets) == (text[:6], text[6:])
  assert non_instructional.midpoint_split("", []) == ("", "")


def test_split_documents_and_pair_builder(bpe_tokenizer):
  docs = ["one two three four five six", "alpha beta gamma delta"]
  halves = non_instructional.split_documents(docs, bpe_tokenizer)
  assert [f"{h['prompt']} {h['reference']}" for h in halves] == docs
  record = non_instructional.build_pair(halves[0]["prompt"], "a teacher continuation")
  assert record["messages"][0] == {"role": "user", "content": halves[0]["prompt"]}
  text, spans = formatting.format_chat(record["messages"], ct.BUILTIN_TEMPLATES["chatml"], {})
  (ex,) = examples.formatted_examples([(text, spans)], bpe_tokenizer)
  assert bpe_tokenizer.decode(ex["tokens"][ex["mask"]]) == "a teacher continuation<|im_end|>\n"


def test_select_by_perplexity():
  scores = [3.0, 40.0, np.nan, 15.0, 15.1, 9.0]
  assert selection.select_by_perplexity(scores, max_perplexity=15).tolist() == [0, 3, 5]
  assert selection.select_by_perplexity(scores, min_perplexity=30).tolist() == [1]
  assert selection.select_by_perplexity(scores).tolist() == [0, 1, 3, 4, 5]


def test_load_scores(tmp_path):
  (tmp_path / "s.txt").write_text("1.5\n2\ninf\n")
  assert np.array_equal(selection.load_scores(str(tmp_path / "s.txt"), 3), [1.5, 2, np.inf])
