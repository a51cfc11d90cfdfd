"""Packing: segment ids, positions, the in-segment target shift and loss masks, every mode."""

import numpy as np
import pytest

from langshift.data import examples, formatting, packing
from langshift.tokenization import chat_templates as ct

KEYS = ("inputs", "targets", "segment_ids", "positions", "loss_weights")


def synthetic_examples(n=30, seed=0, max_len=40):
  """Token ids encode (example, position): token = 1000 * (example + 1) + position."""
  rng = np.random.default_rng(seed)
  out = []
  for i in range(n):
    length = int(rng.integers(1, max_len))
    bounds = np.unique(np.concatenate([[0], rng.integers(1, max(length, 2), 3)]))
    out.append(
        {
            "tokens": (1000 * (i + 1) + np.arange(length)).astype(np.int32),
            "mask": rng.random(length) < 0.6,
            "boundaries": bounds[bounds < length].astype(np.int32),
        }
    )
  return out


def check_rows(rows, exs, seq_len):
  """Every row is a faithful, shifted copy of pieces of the examples; returns the pieces seen."""
  seen = []
  for row in rows:
    assert set(row) == set(KEYS) and all(row[k].shape == (seq_len,) for k in KEYS)
    assert row["loss_weights"].dtype == np.float32 and row["inputs"].dtype == np.int32
    seg, inp = row["segment_ids"], row["inputs"]
    used = seg > 0
    if not used.all():  # padding only at the end
      assert not used[np.argmin(used) :].any()
    assert (row["loss_weights"][~used] == 0).all() and (inp[~used] == 0).all()
    for s in np.unique(seg[used]):
      where = np.flatnonzero(seg == s)
      assert (np.diff(where) == 1).all()
      ex_ids, pos = inp[where] // 1000 - 1, inp[where] % 1000
      assert len(set(ex_ids)) == 1 and (np.diff(pos) == 1).all()
      ex = exs[ex_ids[0]]
      assert (row["positions"][where] == np.arange(len(where))).all()
      # Target shift within the segment; the mask of the *next* token weights position t.
      assert (row["targets"][where[:-1]] == inp[where[1:]]).all()
      assert (row["loss_weights"][where[:-1]] == ex["mask"][pos[1:]]).all()
      assert row["loss_weights"][where[-1]] == 0
      seen.append((int(ex_ids[0]), int(pos[0]), int(pos[-1]) + 1))
    assert list(np.unique(seg[used])) == list(range(1, seg.max() + 1))
  return seen


def test_assemble_row_shifts_within_segments():
  row = packing.assemble_row(
      [
          (np.array([5, 6, 7]), np.array([0, 1, 1], bool)),
          (np.array([8, 9]), np.array([0, 1], bool)),
      ],
      7,
  )
  assert row["inputs"].tolist() == [5, 6, 7, 8, 9, 0, 0]
  assert row["targets"].tolist() == [6, 7, 0, 9, 0, 0, 0]
  assert row["segment_ids"].tolist() == [1, 1, 1, 2, 2, 0, 0]
  assert row["positions"].tolist() == [0, 1, 2, 0, 1, 0, 0]
  assert row["loss_weights"].tolist() == [1, 1, 0, 1, 0, 0, 0]


@pytest.mark.parametrize("mode", ["concat", "greedy", "boundary", "none"])
@pytest.mark.parametrize("overlong", ["split", "truncate"])
def test_rows_are_faithful_in_every_mode(mode, overlong):
  exs, seq_len = synthetic_examples(), 16
  rows = packing.pack_examples(exs, seq_len, mode, overlong=overlong)
  seen = check_rows(rows, exs, seq_len)
  if mode == "concat" or overlong == "split":  # nothing lost, order kept
    covered = [(i, p) for i, a, b in seen for p in range(a, b)]
    assert covered == [(i, p) for i, e in enumerate(exs) for p in range(len(e["tokens"]))]
  if mode == "concat":
    assert all((r["segment_ids"] > 0).all() for r in rows[:-1])  # only the last row pads
  if mode in ("greedy", "none"):
    for i, a, b in seen:  # an example that fits a row is never cut
      if len(exs[i]["tokens"]) <= seq_len:
        assert (a, b) == (0, len(exs[i]["tokens"]))
  if mode == "none":
    assert all(r["segment_ids"].max() == 1 for r in rows)
  if overlong == "truncate" and mode in ("greedy", "none"):
    assert all(a == 0 for _, a, _ in seen)


@pytest.mark.parametrize("remainder", ["pad", "drop"])
def test_boundary_rows_start_at_paragraph_boundaries(remainder):
  exs, seq_len = synthetic_examples(seed=1), 16
  rows = packing.pack_examples(exs, seq_len, "boundary", boundary_remainder=remainder)
  seen = check_rows(rows, exs, seq_len)
  first_of_row = {}
  for row in rows:
    ex, pos = row["inputs"][0] // 1000 - 1, row["inputs"][0] % 1000
    first_of_row[(int(ex), int(pos))] = True
  for ex, pos in first_of_row:
    b = exs[ex]["boundaries"]
    # A row starts at a boundary, or a whole number of rows into a paragraph longer than a row.
    assert (pos - b[b <= pos].max()) % seq_len == 0, (ex, pos, b)
  if remainder == "pad":
    covered = [(i, p) for i, a, b in seen for p in range(a, b)]
    assert covered == [(i, p) for i, e in enumerate(exs) for p in range(len(e["tokens"]))]
  else:
    assert all((r["segment_ids"] > 0).all() for r in rows[:-1])  # no padding but the end


def test_first_assistant_token_trained_no_prompt_token(bpe_tokenizer):
  conv = [
      {"role": "user", "content": "Question one?"},
      {"role": "assistant", "content": "Yes."},
      {"role": "user", "content": "Two?"},
      {"role": "assistant", "content": "No, sir."},
  ]
  formatted = [
      formatting.format_chat(conv, ct.BUILTIN_TEMPLATES["llama3"], bpe_tokenizer.special_tokens_map)
  ] * 5
  exs = examples.formatted_examples(formatted, bpe_tokenizer)
  text, spans = formatted[0]
  ((_, offsets),) = bpe_tokenizer.encode_batch_with_offsets([text])
  first_reply_token = min(t for t, (s, e) in enumerate(offsets) if e > spans[0][0])
  rows = packing.pack_examples(exs, 128, "greedy")
  assert len(exs[0]["tokens"]) <= 128 and sum(r["segment_ids"].max() for r in rows) == 5
  for row in rows:
    for t in np.flatnonzero(row["segment_ids"] > 0):
      if row["segment_ids"][t + 1 : t + 2].tolist() == [row["segment_ids"][t]]:
        # Trained iff the next token is an assistant token of the original conversation.
        assert row["loss_weights"][t] == exs[0]["mask"][row["positions"][t] + 1]
  row = rows[0]
  assert row["loss_weights"][first_reply_token - 1] == 1  # predicts the first reply token
  assert row["loss_weights"][: first_reply_token - 1].sum() == 0  # the prompt is never a target
  trained_targets = row["targets"][(row["loss_weights"] == 1) & (row["segment_ids"] == 1)]
  assert bpe_tokenizer.decode(trained_targets) == "Yes.<|eot_id|>No, sir.<|eot_id|>"
