"""Generation throughput: langshift's `LocalGenerator` against transformers `generate`.

  python -m langshift.bench.generation                        # corpus rewrite, batch 1/8/32/64
  python -m langshift.bench.generation --batches=8,32 --rounds=2
  python -m langshift.bench.generation --workload=expert --batches=16   # ~900-token prompts

Both sides get the same checkpoint, the same prompt token ids and the same settings (greedy,
`--max_new_tokens`, stop at the tokenizer's end-of-turn ids). langshift runs its real path
(chat template, tokenise, schedule, prefill, decode, detokenise); transformers runs
`model.generate` on left-padded batches of `--batch` prompts in request order, as a user would.
The two alternate A B A B after a warm-up of each (compilation is not timed), so a machine shared
with other jobs slows both alike. Per run it prints prefill seconds, ms per decode step (decode
time / model calls after the prefill), generated tokens per second (tokens up to and including
the stop token, over the whole call), the process's peak RSS while the run lasted, and whether
every output equals transformers' token for token (fp32 greedy must).

Workloads (from the native-alignment recipe): `rewrite` is the worker's short request with a
document piece of at most `--piece_tokens` tokens; `expert` is the expert's full policy prompt
(system message) with the piece. Pieces come from `--corpus` in document order.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np
import psutil

DEFAULT_MODEL = ".cache/smollm2-135m-instruct"
DEFAULT_CORPUS = ".cache/corpora/debian_handbook/ar-MA/train.jsonl"


@dataclasses.dataclass
class RunResult:
  """One timed generation call over the whole workload."""

  impl: str
  batch: int
  seconds: float
  outputs: list[list[int]]  # generated ids per request, the stop token included when emitted
  prefill_s: float | None
  decode_steps: int | None  # model calls after the prefill(s)
  decode_s: float | None
  peak_rss_mib: float

  @property
  def generated(self) -> int:
    return sum(len(o) for o in self.outputs)

  @property
  def tokens_per_s(self) -> float:
    return self.generated / self.seconds

  @property
  def ms_per_step(self) -> float | None:
    if not self.decode_steps:
      return None
    return 1000 * self.decode_s / self.decode_steps


class PeakRss:
  """Highest resident set size of this process while the `with` block runs (sampled every 5 ms;
  `ru_maxrss` cannot be reset, and both models live in one process)."""

  def __init__(self, interval_s: float = 0.005):
    self.interval_s, self.peak = interval_s, 0
    self._stop = threading.Event()
    self._process = psutil.Process()

  def _sample(self):
    while not self._stop.is_set():
      self.peak = max(self.peak, self._process.memory_info().rss)
      self._stop.wait(self.interval_s)

  def __enter__(self):
    self.peak = self._process.memory_info().rss
    self._thread = threading.Thread(target=self._sample, daemon=True)
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()
    self.peak = max(self.peak, self._process.memory_info().rss)

  @property
  def peak_mib(self) -> float:
    return self.peak / 2**20


@dataclasses.dataclass(frozen=True)
class KeepLogits:
  """A logits processor that returns the logits unchanged (`--with_seen_mask`)."""

  def __call__(self, logits, context):
    del context
    return logits


def corpus_pieces(path: str, n: int, piece_tokens: int, length: Callable[[str], int]) -> list[str]:
  """The first `n` pieces of the corpus' documents, cut as the rewrite recipe cuts them."""
  from langshift.recipes.rewrite_io import chunk_document  # pylint: disable=import-outside-toplevel

  pieces = []
  with open(path, encoding="utf-8") as f:
    for line in f:
      text = json.loads(line).get("text", "")
      if not text.strip():
        continue
      pieces.extend(p for p in chunk_document(text, piece_tokens, length)[0] if p.strip())
      if len(pieces) >= n:
        return pieces[:n]
  if not pieces:
    raise ValueError(f"{path}: no documents with a non-empty 'text' field")
  return (pieces * (-(-n // len(pieces))))[:n]  # a small corpus repeats


def workload_messages(kind: str, pieces: Sequence[str], language: str) -> list[list[dict]]:
  """Chat conversations of the native-alignment worker (`rewrite`) or expert (`expert`)."""
  from langshift.recipes.native_alignment import polishing_policy  # pylint: disable=import-outside-toplevel

  if kind == "rewrite":
    return [polishing_policy.worker_messages(p, language=language) for p in pieces]
  if kind == "expert":
    return [polishing_policy.policy_messages(p, language=language) for p in pieces]
  raise ValueError(f"--workload={kind!r}: expected rewrite or expert")


def cut_at_stop(ids: Sequence[int], stop_ids: Sequence[int]) -> list[int]:
  """Generated ids up to and including the first stop id."""
  out = []
  for t in ids:
    out.append(int(t))
    if int(t) in stop_ids:
      break
  return out


def run_transformers(
    model, prompts: Sequence[Sequence[int]], batch: int, max_new_tokens: int, stop_ids, pad_id
) -> RunResult:
  """`model.generate` over left-padded batches of `batch` prompts, in request order."""
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel

  calls: list[float] = []

  class Clock(transformers.LogitsProcessor):
    """Called once per chosen token, right after the model call that produced its logits."""

    def __call__(self, input_ids, scores):
      calls.append(time.perf_counter())
      return scores

  outputs, prefill_s, decode_s, steps = [], 0.0, 0.0, 0
  with PeakRss() as rss:
    start = time.perf_counter()
    for i in range(0, len(prompts), batch):
      chunk = prompts[i : i + batch]
      width = max(len(p) for p in chunk)
      ids = np.full((len(chunk), width), pad_id, np.int64)
      mask = np.zeros((len(chunk), width), np.int64)
      for r, p in enumerate(chunk):
        ids[r, width - len(p) :], mask[r, width - len(p) :] = p, 1
      calls.clear()
      t0 = time.perf_counter()
      with torch.no_grad():
        out = model.generate(
            torch.from_numpy(ids),
            attention_mask=torch.from_numpy(mask),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            eos_token_id=list(stop_ids),
            pad_token_id=pad_id,
            logits_processor=transformers.LogitsProcessorList([Clock()]),
        )
      t1 = time.perf_counter()
      prefill_s += calls[0] - t0
      decode_s += t1 - calls[0]
      steps += len(calls) - 1
      outputs.extend(cut_at_stop(row[width:].tolist(), stop_ids) for row in out.numpy())
    seconds = time.perf_counter() - start
  return RunResult(
      "transformers", batch, seconds, outputs, prefill_s, steps, decode_s, rss.peak_mib
  )


def run_langshift(generator, conversations, options) -> RunResult:
  """The path `LocalGenerator.chat` takes (render, tokenise, generate, detokenise), keeping ids."""
  with PeakRss() as rss:
    start = time.perf_counter()
    ids = [generator.encode_prompt(generator.render_chat(c), add_bos=False) for c in conversations]
    outs = generator.generate_tokens(ids, options)
    texts = [generator.tokenizer.decode(o, skip_special_tokens=True) for o in outs]
    seconds = time.perf_counter() - start
  del texts
  stats = getattr(generator, "last_stats", None)
  if stats is not None:  # where the prefill time goes: many small refill calls or a few large
    print(
        f"   langshift: {stats.prefill_calls} prefill calls for {stats.requests} requests "
        f"({stats.refills} refilled into running batches), {stats.decode_calls} decode calls"
    )
  # generate_tokens drops the stop token; a row shorter than the budget ended on one (-1 marks it).
  outputs = [list(o) + ([-1] if len(o) < options.max_new_tokens else []) for o in outs]
  return RunResult(
      "langshift",
      generator.batch_size,
      seconds,
      outputs,
      None if stats is None else stats.prefill_s,
      None if stats is None else stats.decode_steps,
      None if stats is None else stats.decode_s,
      rss.peak_mib,
  )


def same_outputs(ours: RunResult, ref: RunResult) -> tuple[int, int]:
  """(requests whose ids equal transformers' ids, requests); the stop token compared by place."""
  same = 0
  for a, b in zip(ours.outputs, ref.outputs):
    if len(a) == len(b) and all(x == y or x == -1 for x, y in zip(a, b)):
      same += 1
  return same, len(ref.outputs)


def _fmt(x, spec):
  return "-" if x is None else format(x, spec)


def describe(r: RunResult) -> str:
  return (
      f"{r.impl:>12} batch {r.batch:>3}: {r.seconds:7.1f} s, prefill {_fmt(r.prefill_s, '6.1f')} s,"
      f" {_fmt(r.ms_per_step, '6.1f')} ms/decode step, {r.generated:6d} tokens,"
      f" {r.tokens_per_s:6.1f} tokens/s, peak RSS {r.peak_rss_mib:7.0f} MiB"
  )


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--model_dir", default=DEFAULT_MODEL)
  p.add_argument("--corpus", default=DEFAULT_CORPUS)
  p.add_argument("--language", default="ar", help="the corpus' language (the prompt names it)")
  p.add_argument("--workload", default="rewrite", choices=["rewrite", "expert"])
  p.add_argument("--piece_tokens", type=int, default=128)
  p.add_argument("--batches", default="1,8,32,64")
  p.add_argument(
      "--requests_per_slot",
      type=int,
      default=3,
      help="requests per batch row (at least 8 requests): a stream, so finished rows matter",
  )
  p.add_argument("--num_requests", type=int, default=0, help="fixed request count (0: per slot)")
  p.add_argument("--max_new_tokens", type=int, default=160)
  p.add_argument("--rounds", type=int, default=2, help="A B rounds per batch size")
  p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  p.add_argument("--no_torch", action="store_true", help="time langshift only")
  p.add_argument(
      "--with_seen_mask",
      action="store_true",
      help="give langshift a logits processor that changes nothing: it keeps the [batch, vocab]"
      " seen-token mask that processors need (to time skipping it)",
  )
  p.add_argument(
      "--generator_options",
      default="{}",
      help="JSON of extra LocalGenerator keyword arguments (to time one setting at a time)",
  )
  return p.parse_args(argv)


def main(argv=None):
  args = parse_args(argv if argv is not None else sys.argv[1:])
  # pylint: disable=import-outside-toplevel
  import jax

  from langshift.checkpoints.hf_import import load_hf_model
  from langshift.generation.interface import GenerationOptions
  from langshift.generation.local_backend import LocalGenerator
  from langshift.tokenization.tokenizer import load_tokenizer

  for path in (args.model_dir, args.corpus):
    if not os.path.exists(path):
      raise SystemExit(f"generation bench: {path} does not exist")
  batches = [int(b) for b in args.batches.split(",") if b]
  config, params = load_hf_model(args.model_dir, dtype=args.dtype, param_dtype=args.dtype)
  tokenizer = load_tokenizer(args.model_dir)
  extra = json.loads(args.generator_options)
  if args.with_seen_mask:
    extra["processors"] = (KeepLogits(),)
  print(
      f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__},"
      f" {os.cpu_count()} CPUs; model {args.model_dir} ({config.num_params() / 1e6:.0f}M,"
      f" {args.dtype}); workload {args.workload}, max_new_tokens {args.max_new_tokens}",
      flush=True,
  )
  hf_model = None
  if not args.no_torch:
    import torch
    import transformers

    hf_model = transformers.AutoModelForCausalLM.from_pretrained(
        args.model_dir, dtype=torch.float32
    ).eval()
    print(
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"transformers {transformers.__version__}",
        flush=True,
    )

  options = GenerationOptions(max_new_tokens=args.max_new_tokens)
  summary = []
  for batch in batches:
    n = args.num_requests or max(8, args.requests_per_slot * batch)
    pieces = corpus_pieces(args.corpus, n, args.piece_tokens, lambda s: len(tokenizer.encode(s)))
    conversations = workload_messages(args.workload, pieces, args.language)
    gen = LocalGenerator(config, params, tokenizer, batch_size=batch, **extra)
    prompts = [gen.encode_prompt(gen.render_chat(c), add_bos=False) for c in conversations]
    lengths = [len(p) for p in prompts]
    print(
        f"\n== batch {batch}: {n} requests, prompt tokens {min(lengths)}-{max(lengths)}"
        f" (mean {statistics.mean(lengths):.0f})",
        flush=True,
    )

    def run_a(gen=gen, conversations=conversations):
      return run_langshift(gen, conversations, options)

    def run_b(batch=batch, prompts=prompts, stop=gen.stop_token_ids, pad=gen.pad_id):
      return run_transformers(hf_model, prompts, batch, args.max_new_tokens, stop, pad)

    t = time.perf_counter()
    run_a()  # compiles every program the workload needs
    print(f"langshift warm-up (compilation included): {time.perf_counter() - t:.1f} s", flush=True)
    if hf_model is not None:
      run_b()
    ours, theirs = [], []
    for _ in range(args.rounds):
      ours.append(run_a())
      print(describe(ours[-1]), flush=True)
      if hf_model is not None:
        theirs.append(run_b())
        print(describe(theirs[-1]), flush=True)
    out_lengths = [len(o) for o in ours[-1].outputs]
    stopped = sum(1 for o in ours[-1].outputs if o and o[-1] == -1)
    print(
        f"generated lengths {min(out_lengths)}-{max(out_lengths)} (mean"
        f" {statistics.mean(out_lengths):.0f}); {stopped}/{n} stopped at a stop token",
        flush=True,
    )
    a = statistics.median(r.tokens_per_s for r in ours)
    line = f"batch {batch}: langshift {a:.1f} tokens/s"
    if theirs:
      b = statistics.median(r.tokens_per_s for r in theirs)
      same, total = same_outputs(ours[-1], theirs[-1])
      line += (
          f", transformers {b:.1f} tokens/s, ratio {a / b:.2f}x,"
          f" identical outputs {same}/{total}"
      )
    summary.append(line)
  print("\n" + "\n".join(summary), flush=True)


if __name__ == "__main__":
  main()
