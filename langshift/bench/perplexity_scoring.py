"""Throughput of corpus perplexity scoring (`langshift.score`) against a transformers forward loop
over the same documents, in the same run (InsCP's data selection, Chen & Lee 2024,
arXiv:2405.20175).

  python -m langshift.bench.perplexity_scoring --model=.cache/smollm2-135m-instruct \\
      --corpus=.cache/corpora/inscp/zh-TW/train.jsonl --documents=128

langshift: the whole scoring job (`score_corpus`: shards, durable writes, the scores file) on a
`LocalScorer` (rolling windows of `max_length`; the windows of `batch_size` documents packed back
to back into `rows_per_call` rows per forward pass, longest first, bucketed shapes). A first pass
compiles every shape and is timed apart; each timed pass runs a fresh job folder. transformers:
one unpadded forward per document (`torch.no_grad`, fp32, windows of `max_length` as well),
log-softmax and the gather of the next-token log-probabilities: what a plain scoring script
does. The two sides alternate for `--rounds` rounds and each side's fastest round is reported
(the speed of a shared VM drifts by 10-30% over minutes; one pass each measured the drift).
Both compute the same per-document NLL; the script prints their largest difference.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time

import numpy as np


def _documents(path: str, count: int) -> list[str]:
  with open(path, encoding="utf-8") as f:
    texts = [json.loads(line)["text"] for line in f if line.strip()]
  return texts[:count]


def torch_scorer(model_dir: str, tokenizer, max_length: int, threads: int):
  """A function documents -> [(nll, tokens)]: a transformers loop with the scorer's windows and
  prefix."""
  # pylint: disable=import-outside-toplevel
  import torch
  import transformers

  from langshift.evaluation.scoring import prefix_token_id, resolve_bos, rolling_windows

  torch.set_num_threads(threads)
  model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
  model.eval()
  bos, prefix = resolve_bos(tokenizer, "auto"), prefix_token_id(tokenizer)

  def run(documents):
    out = []
    with torch.no_grad():
      for text in documents:
        ids = list(tokenizer.encode(text))
        ids = [tokenizer.bos_id, *ids] if bos and ids else ids
        nll, n = 0.0, 0
        for inputs, targets in rolling_windows(ids, prefix, max_length):
          logits = model(torch.as_tensor([inputs])).logits[0, -len(targets) :].float()
          logp = torch.log_softmax(logits, -1)
          logp = logp[torch.arange(len(targets)), torch.as_tensor(targets)]
          nll, n = nll - float(logp.sum()), n + len(targets)
        out.append((nll, n))
    return out

  return run


def _timed(fn):
  start = time.perf_counter()
  out = fn()
  return time.perf_counter() - start, out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default=".cache/smollm2-135m-instruct")
  parser.add_argument("--corpus", default=".cache/corpora/inscp/zh-TW/train.jsonl")
  parser.add_argument("--documents", type=int, default=128)
  parser.add_argument("--batch_size", type=int, default=16, help="records per durable batch")
  parser.add_argument("--rows_per_call", type=int, default=4, help="rows per forward pass")
  parser.add_argument("--max_length", type=int, default=512)
  parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
  parser.add_argument("--rounds", type=int, default=3, help="alternating timed rounds per side")
  args = parser.parse_args()

  # pylint: disable=import-outside-toplevel
  from langshift import score
  from langshift.tokenization.tokenizer import load_tokenizer

  documents = _documents(args.corpus, args.documents)
  tokenizer = load_tokenizer(args.model)
  with tempfile.TemporaryDirectory() as tmp:
    corpus = os.path.join(tmp, "corpus.jsonl")
    with open(corpus, "w", encoding="utf-8") as f:
      f.writelines(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in documents)
    src = score.source_from_flags(corpus, "jsonl", "text", False)
    scorer = score.local_scorer(
        args.model, max_length=args.max_length, rows_per_call=args.rows_per_call
    )

    def run(out):
      return score.score_corpus(
          src, out, lambda: scorer, batch_size=args.batch_size, shard_size=len(documents)
      )

    first, _ = _timed(lambda: run(os.path.join(tmp, "compile")))  # compiles every shape
    reference_run = torch_scorer(args.model, tokenizer, args.max_length, threads=args.threads)
    ours, theirs = [], []
    for r in range(args.rounds):
      seconds, summary = _timed(lambda r=r: run(os.path.join(tmp, f"timed{r}")))
      ours.append(seconds)
      seconds, reference = _timed(lambda: reference_run(documents))
      theirs.append(seconds)
      print(f"round {r + 1}: langshift {ours[-1]:.1f} s, transformers {theirs[-1]:.1f} s")
    scores = np.load(os.path.join(tmp, "timed0", score.SCORES_FILE))
  tokens = sum(n for _, n in reference)
  reference_ppl = np.asarray([score.perplexity(nll, n) for nll, n in reference])
  finite = np.isfinite(reference_ppl)
  diff = np.max(np.abs(np.log(scores[finite]) - np.log(reference_ppl[finite])))
  best, best_torch = min(ours), min(theirs)
  print(f"{len(documents)} documents, {tokens} scored tokens, max_length {args.max_length}")
  print(f"langshift.score    {len(documents) / best:8.2f} docs/s  {tokens / best:9.1f} tokens/s")
  print(f"  (first pass with compilation: {first:.1f} s; fastest timed pass {best:.1f} s)")
  print(
      f"transformers loop  {len(documents) / best_torch:8.2f} docs/s"
      f"  {tokens / best_torch:9.1f} tokens/s  ({best_torch:.1f} s)"
  )
  print(f"speed-up {best_torch / best:.2f}x; max |log ppl difference| {diff:.2e}")
  print(
      f"median perplexity {summary['median_perplexity']:.2f}; share <= 15: "
      f"{summary['share_at_most_15']:.3f}, <= 30: {summary['share_at_most_30']:.3f}"
  )
  assert math.isfinite(diff)


if __name__ == "__main__":
  main()
