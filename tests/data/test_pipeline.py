"""The training/eval pipeline: determinism, exact resume, sharding, proportions, bad input."""

import json

import numpy as np
import pytest
from data_fixtures import write_jsonl

from langshift.data import config as config_lib
from langshift.data import pipeline

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()


def _docs(prefix, n, seed):
  rng = np.random.default_rng(seed)
  return [
      {
          "text": f"{prefix}{i} "
          + "\n\n".join(
              " ".join(rng.choice(WORDS, rng.integers(3, 30))) for _ in range(rng.integers(1, 4))
          )
      }
      for i in range(n)
  ]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  d = tmp_path_factory.mktemp("corpus")
  write_jsonl(d / "a.jsonl", _docs("A", 300, 0))
  write_jsonl(d / "b.jsonl", _docs("B", 100, 1))
  write_jsonl(
      d / "chat.jsonl",
      [
          {
              "messages": [
                  {"role": "user", "content": f"question {i}?"},
                  {"role": "assistant", "content": f"answer {i} " + " ".join(WORDS[: i % 7])},
              ]
          }
          for i in range(80)
      ],
  )
  return d


def data_config(corpus, **overrides):
  data = config_lib.default_data_config()
  data.sources.a = config_lib.source_config(path=str(corpus / "a.jsonl"), weight=0.6)
  data.sources.b = config_lib.source_config(path=str(corpus / "b.jsonl"), weight=0.2)
  data.sources.chat = config_lib.source_config(
      path=str(corpus / "chat.jsonl"), weight=0.2, template="chat"
  )
  data.chat_template = "llama3"
  data.tokenize_batch_size = 16
  data.mixture_block = 64
  for k, v in overrides.items():
    data[k] = v
  return data


def take(it, n):
  return [next(it) for _ in range(n)]


def assert_same(xs, ys):
  assert len(xs) == len(ys)
  for x, y in zip(xs, ys):
    assert x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)


def test_batches_follow_the_contract(corpus, bpe_tokenizer):
  it = pipeline.make_train_iterator(
      data_config(corpus), bpe_tokenizer, seq_len=48, global_batch_size=4, seed=0
  )
  batch = next(it)
  it.close()
  assert set(batch) == {"inputs", "targets", "segment_ids", "positions", "loss_weights"}
  for k, v in batch.items():
    assert v.shape == (4, 48)
    assert v.dtype == (np.float32 if k == "loss_weights" else np.int32)
  same = batch["segment_ids"][:, 1:] == batch["segment_ids"][:, :-1]
  assert (batch["targets"][:, :-1][same] == batch["inputs"][:, 1:][same]).all()
  assert (batch["loss_weights"][:, :-1][~same] == 0).all()


def test_same_seed_same_stream_other_seed_other_stream(corpus, bpe_tokenizer):
  make = lambda seed: pipeline.make_train_iterator(
      data_config(corpus), bpe_tokenizer, seq_len=32, global_batch_size=2, seed=seed
  )
  a, b, c = make(0), make(0), make(1)
  xs, ys, zs = take(a, 6), take(b, 6), take(c, 6)
  for it in (a, b, c):
    it.close()
  assert_same(xs, ys)
  assert not np.array_equal(xs[0]["inputs"], zs[0]["inputs"])


@pytest.mark.parametrize("packing", ["concat", "boundary"])
def test_resume_mid_stream_equals_not_stopping(corpus, bpe_tokenizer, packing):
  cfg = data_config(corpus, packing=packing)
  make = lambda: pipeline.make_train_iterator(
      cfg, bpe_tokenizer, seq_len=24, global_batch_size=2, seed=5
  )
  it = make()
  take(it, 7)
  state = json.loads(json.dumps(it.get_state()))  # what goes into the checkpoint
  expected = take(it, 8)
  it.close()
  resumed = make()
  resumed.set_state(state)
  assert_same(take(resumed, 8), expected)
  resumed.close()
  if packing == "concat":  # the checkpoint was taken inside a document
    assert '"offset": 0' not in json.dumps(state)


def test_processes_split_one_global_stream(corpus, bpe_tokenizer):
  cfg = data_config(corpus, packing="none", overlong="truncate")  # a row per example
  rows = lambda p, n, bs: np.concatenate(
      [
          b["inputs"]
          for b in take(
              pipeline.make_train_iterator(
                  cfg,
                  bpe_tokenizer,
                  seq_len=64,
                  global_batch_size=bs,
                  seed=2,
                  process_index=p,
                  process_count=n,
              ),
              5,
          )
      ]
  )
  everything = rows(0, 1, 4)
  first, second = rows(0, 2, 4), rows(1, 2, 4)
  assert first.shape == (10, 64)
  assert np.array_equal(first, everything[0::2]) and np.array_equal(second, everything[1::2])
  with pytest.raises(ValueError, match="not divisible"):
    pipeline.make_train_iterator(
        cfg, bpe_tokenizer, seq_len=64, global_batch_size=5, seed=0, process_count=2
    )


def test_realised_proportions_through_the_pipeline(corpus, bpe_tokenizer):
  cfg = data_config(corpus, packing="none", overlong="truncate")
  it = pipeline.make_train_iterator(cfg, bpe_tokenizer, seq_len=128, global_batch_size=16, seed=3)
  firsts = [bpe_tokenizer.decode(row[1:4]) for b in take(it, 16) for row in b["inputs"]]
  it.close()
  n = len(firsts)
  share = {s: sum(f.startswith(s) for f in firsts) / n for s in ("A", "B")}
  share["chat"] = sum(f.startswith("<|start_header_id|>") or "user" in f for f in firsts) / n
  # 256 rows = 4 blocks of 64: exact to within one example per source.
  assert abs(share["A"] - 0.6) <= 1 / n and abs(share["B"] - 0.2) <= 1 / n
  assert abs(share["chat"] - 0.2) <= 1 / n


def test_chat_loss_weights_only_on_assistant_targets(corpus, bpe_tokenizer):
  cfg = data_config(corpus, packing="greedy")
  cfg.sources.a.weight = cfg.sources.b.weight = 1e-3
  it = pipeline.make_train_iterator(cfg, bpe_tokenizer, seq_len=256, global_batch_size=2, seed=0)
  batch = next(it)
  it.close()
  checked = 0
  for row_t, row_w, row_s in zip(batch["targets"], batch["loss_weights"], batch["segment_ids"]):
    for s in set(row_s[row_s > 0]):
      trained = bpe_tokenizer.decode(row_t[(row_s == s) & (row_w == 1)])
      if trained.startswith("answer"):
        assert trained.endswith("<|eot_id|>") and "question" not in trained
        assert trained.count("answer") == 1
        checked += 1
  assert checked >= 4


def test_eval_batches_are_deterministic_complete_and_padded(corpus, bpe_tokenizer):
  cfg = config_lib.default_data_config()
  cfg.sources.b = config_lib.source_config(path=str(corpus / "b.jsonl"))
  cfg.packing = "greedy"
  batches = pipeline.make_eval_batches(cfg, bpe_tokenizer, seq_len=64, global_batch_size=8)
  again = pipeline.make_eval_batches(cfg, bpe_tokenizer, seq_len=64, global_batch_size=8)
  assert_same(batches, again)
  docs = [row[r["segment_ids"][i] > 0] for r in batches for i, row in enumerate(r["inputs"])]
  text = "".join(bpe_tokenizer.decode(d) for d in docs)
  assert [f"B{i} " in text for i in range(100)] == [True] * 100  # every record, once each
  assert text.index("B1 ") < text.index("B2 ") < text.index("B99 ")  # in order
  shards = [
      pipeline.make_eval_batches(
          cfg, bpe_tokenizer, seq_len=64, global_batch_size=8, process_index=p, process_count=2
      )
      for p in range(2)
  ]
  assert len(shards[0]) == len(shards[1]) == len(batches)
  assert np.array_equal(shards[0][0]["inputs"], batches[0]["inputs"][0::2])
  assert (batches[-1]["segment_ids"][-1] == 0).all() or len(docs) % 8 == 0
  assert (
      len(
          pipeline.make_eval_batches(
              cfg, bpe_tokenizer, seq_len=64, global_batch_size=8, max_batches=2
          )
      )
      == 2
  )


def test_perplexity_selection(tmp_path, bpe_tokenizer):
  write_jsonl(tmp_path / "p.jsonl", [{"text": f"doc{i}", "ppl": float(i)} for i in range(40)])
  cfg = config_lib.default_data_config()
  cfg.packing = "none"
  cfg.sources.p = config_lib.source_config(
      path=str(tmp_path / "p.jsonl"), perplexity_field="ppl", max_perplexity=15.0
  )
  batches = pipeline.make_eval_batches(cfg, bpe_tokenizer, seq_len=16, global_batch_size=4)
  kept = [bpe_tokenizer.decode(r, skip_special_tokens=True) for b in batches for r in b["inputs"]]
  assert [k for k in kept if k] == [f"doc{i}" for i in range(16)]
  np.save(tmp_path / "scores.npy", np.arange(40.0)[::-1])
  cfg.sources.p.perplexity_field = ""
  cfg.sources.p.perplexity_scores = str(tmp_path / "scores.npy")
  batches = pipeline.make_eval_batches(cfg, bpe_tokenizer, seq_len=16, global_batch_size=4)
  kept = [bpe_tokenizer.decode(r, skip_special_tokens=True) for b in batches for r in b["inputs"]]
  assert [k for k in kept if k] == [f"doc{i}" for i in range(24, 40)]


def test_bad_input_errors(tmp_path, corpus, bpe_tokenizer):
  make = lambda cfg: pipeline.make_train_iterator(
      cfg, bpe_tokenizer, seq_len=32, global_batch_size=2, seed=0
  )
  cfg = data_config(corpus)
  cfg.packign = "concat"
  with pytest.raises(ValueError, match=r"unknown field\(s\) \['packign'\] in data"):
    make(cfg)
  cfg = data_config(corpus)
  cfg.sources.a.wieght = 2.0
  with pytest.raises(ValueError, match=r"\['wieght'\] in data.sources.a"):
    make(cfg)
  with pytest.raises(ValueError, match="unknown field"):
    config_lib.source_config(pth="x")
  cfg = data_config(corpus)
  cfg.sources.a.path = str(tmp_path / "missing*.jsonl")
  with pytest.raises(ValueError, match="source a: path .* matched no files"):
    make(cfg)
  with pytest.raises(ValueError, match="data.sources is empty"):
    make(config_lib.default_data_config())
  cfg = data_config(corpus)
  cfg.packing = "tight"
  with pytest.raises(ValueError, match="data.packing='tight'"):
    make(cfg)


def test_malformed_line_in_the_stream(tmp_path, bpe_tokenizer):
  lines = [json.dumps({"text": f"fine {i}"}) for i in range(30)]
  lines[7] = '{"text": "truncated'
  (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
  cfg = config_lib.default_data_config()
  cfg.shuffle = False
  cfg.packing = "none"
  cfg.tokenize_batch_size = 4
  cfg.sources.m = config_lib.source_config(path=str(tmp_path / "m.jsonl"))
  with pytest.raises(Exception, match=r"m.jsonl:8: malformed JSON line"):
    pipeline.make_eval_batches(cfg, bpe_tokenizer, seq_len=16, global_batch_size=2)
  cfg.on_bad_record = "skip"
  batches = pipeline.make_eval_batches(cfg, bpe_tokenizer, seq_len=16, global_batch_size=2)
  kept = [bpe_tokenizer.decode(r, skip_special_tokens=True) for b in batches for r in b["inputs"]]
  assert [k for k in kept if k] == [f"fine {i}" for i in range(30) if i != 7]
