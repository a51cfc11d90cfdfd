"""Time per 1,000 lm-eval log-likelihood requests: the `langshift` model type against lm-eval's
own `hf` backend, same CPU, same model, same requests.

  python -m langshift.bench.lm_eval_backend --model=.cache/smollm2-135m-instruct --requests=1000

The requests are what a multiple-choice task sends: for each of `requests / choices` handbook
paragraphs (`--corpus`, JSON lines with `text`), the context is its opening words and the
continuations are its next `--answer_words` words and those of `choices - 1` other paragraphs.
Both sides get the list in one `loglikelihood` call, as lm-eval's evaluator makes it: langshift
packs the requests back to back into `batch_size` rows per forward pass (`LocalScorer`), `hf`
pads a batch of `batch_size` requests (fp32, torch with `--threads`). A first langshift pass
compiles its shapes and is reported apart; then the sides alternate for `--rounds` rounds and each
side's fastest round counts (a shared VM's speed drifts over minutes). Printed: seconds per 1,000
requests for each side, the ratio, and the largest log-likelihood difference between them.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def make_requests(path: str, count: int, choices: int, context_words: int, answer_words: int):
  """(context, continuation) pairs, `choices` per context, `count` in all."""
  with open(path, encoding="utf-8") as f:
    texts = [json.loads(line)["text"].split() for line in f if line.strip()]
  texts = [t for t in texts if len(t) >= context_words + answer_words]
  if not texts:
    raise ValueError(f"{path}: no paragraph of {context_words + answer_words} words or more")
  pairs = []
  for q in range(-(-count // choices)):
    words = texts[q % len(texts)]
    context = " ".join(words[:context_words])
    for c in range(choices):
      other = words if c == 0 else texts[(q + 7 * c) % len(texts)]
      answer = other[context_words : context_words + answer_words]
      pairs.append((context, " " + " ".join(answer)))
  return pairs[:count]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default=".cache/smollm2-135m-instruct")
  parser.add_argument("--corpus", default=".cache/corpora/debian_handbook/en-US/heldout.jsonl")
  parser.add_argument("--requests", type=int, default=1000)
  parser.add_argument("--choices", type=int, default=4)
  parser.add_argument("--context_words", type=int, default=48)
  parser.add_argument("--answer_words", type=int, default=6)
  parser.add_argument("--batch_size", type=int, default=8)
  parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
  parser.add_argument("--rounds", type=int, default=2)
  args = parser.parse_args()

  os.environ.setdefault("HF_HUB_OFFLINE", "1")
  # pylint: disable=import-outside-toplevel
  import torch
  from lm_eval.api.instance import Instance
  from lm_eval.models.huggingface import HFLM

  from langshift.evaluation.lm_eval_backend import LangshiftLM

  torch.set_num_threads(args.threads)
  pairs = make_requests(
      args.corpus, args.requests, args.choices, args.context_words, args.answer_words
  )
  requests = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]
  ours = LangshiftLM(pretrained=args.model, batch_size=args.batch_size)
  theirs = HFLM(pretrained=args.model, dtype="float32", device="cpu", batch_size=args.batch_size)

  def timed(lm):
    start = time.perf_counter()
    out = lm.loglikelihood(requests)
    return time.perf_counter() - start, out

  first, _ = timed(ours)
  times = {"langshift": [], "hf": []}
  for r in range(args.rounds):
    seconds, mine = timed(ours)
    times["langshift"].append(seconds)
    seconds, reference = timed(theirs)
    times["hf"].append(seconds)
    print(f"round {r + 1}: langshift {times['langshift'][-1]:.1f} s, hf {times['hf'][-1]:.1f} s")
  tokens = sum(len(ours.scorer.tok_encode(c + x)) for c, x in pairs)
  diff = max(abs(a[0] - b[0]) for a, b in zip(mine, reference))
  per_1000 = {k: 1000 * min(v) / len(requests) for k, v in times.items()}
  print(
      f"{len(requests)} loglikelihood requests ({args.choices} per context, {tokens} tokens), "
      f"batch_size {args.batch_size}, {args.threads} threads"
  )
  print(f"langshift  {per_1000['langshift']:7.1f} s per 1,000 requests (first pass {first:.1f} s)")
  print(f"hf         {per_1000['hf']:7.1f} s per 1,000 requests")
  print(
      f"hf / langshift {per_1000['hf'] / per_1000['langshift']:.2f}x; "
      f"max |ll difference| {diff:.2e}"
  )


if __name__ == "__main__":
  main()
