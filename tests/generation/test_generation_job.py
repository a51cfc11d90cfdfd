import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from langshift.generation.interface import GenerationOptions
from langshift.generation.job import JobConfig, read_outputs, run_generation_job

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class EchoGenerator:
  """Deterministic stand-in backend that records every prompt it is asked about."""

  def __init__(self):
    self.seen = []

  def complete(self, prompts, options):
    self.seen.extend(prompts)
    return [p.upper() for p in prompts]

  def chat(self, conversations, options):
    self.seen.extend(c[-1]["content"] for c in conversations)
    return [f"re: {c[-1]['content']}" for c in conversations]


def _write_input(path, n):
  with open(path, "w", encoding="utf-8") as f:
    for i in range(n):
      rec = (
          {"id": i, "messages": [{"role": "user", "content": f"q{i}"}]}
          if i % 3 == 0
          else {"id": i, "prompt": f"text {i}"}
      )
      f.write(json.dumps(rec) + "\n")


class Killed(Exception):
  pass


def test_job_killed_mid_run_resumes_with_each_record_exactly_once(tmp_path):
  src, out = str(tmp_path / "in.jsonl"), str(tmp_path / "out")
  _write_input(src, 13)
  cfg = JobConfig(shard_size=5, batch_size=2)
  gen = EchoGenerator()

  def kill_after_seven(written):
    if written >= 7:
      raise Killed()

  with pytest.raises(Killed):
    run_generation_job(src, out, gen, GenerationOptions(), cfg, on_batch_written=kill_after_seven)
  assert sorted(os.listdir(out)) == ["part-00000.jsonl", "part-00001.jsonl.inprogress"]
  # A kill in the middle of a write leaves a torn last line: it must be dropped and redone.
  with open(os.path.join(out, "part-00001.jsonl.inprogress"), "a") as f:
    f.write('{"id": 9, "prompt": "te')

  written = run_generation_job(src, out, gen, GenerationOptions(), cfg)
  assert written == 13 - 7  # shard 0 (5 records) and the first batch (2) of shard 1 were durable
  records = read_outputs(out)
  assert [r["id"] for r in records] == list(range(13))
  assert records[1]["completion"] == "TEXT 1" and records[3]["completion"] == "re: q3"
  # The backend saw each record once: durable batches are never regenerated.
  assert sorted(gen.seen) == sorted([f"q{i}" if i % 3 == 0 else f"text {i}" for i in range(13)])
  assert sorted(os.listdir(out)) == ["part-00000.jsonl", "part-00001.jsonl", "part-00002.jsonl"]
  assert run_generation_job(src, out, gen, GenerationOptions(), cfg) == 0


def test_workers_split_shards_without_overlap(tmp_path):
  src, out = str(tmp_path / "in.jsonl"), str(tmp_path / "out")
  _write_input(src, 11)
  for w in range(2):
    run_generation_job(
        src,
        out,
        EchoGenerator(),
        GenerationOptions(),
        JobConfig(shard_size=3, batch_size=2, worker_index=w, num_workers=2),
    )
  assert [r["id"] for r in read_outputs(out)] == list(range(11))


_CHILD = textwrap.dedent("""
    import sys
    from langshift.generation.interface import GenerationOptions
    from langshift.generation.job import JobConfig, run_generation_job

    class Reverse:
      def complete(self, prompts, options):
        return [p[::-1] for p in prompts]
      def chat(self, conversations, options):
        return [c[-1]["content"][::-1] for c in conversations]

    run_generation_job(sys.argv[1], sys.argv[2], Reverse(), GenerationOptions(),
                       JobConfig(shard_size=4, batch_size=1))
""")


def test_subprocess_killed_with_sigkill_then_resumed(tmp_path):
  src, out = str(tmp_path / "in.jsonl"), str(tmp_path / "out")
  _write_input(src, 40)
  # SIGKILL right after the 10th record is durable: two shards done, the third half written.
  env = {**os.environ, "PYTHONPATH": REPO, "LANGSHIFT_FAULT": "kill@records=10"}
  child = subprocess.run([sys.executable, "-c", _CHILD, src, out], env=env, timeout=120)
  assert child.returncode == -signal.SIGKILL
  assert len(read_outputs(out)) == 8  # complete shards only
  with open(os.path.join(out, "part-00002.jsonl.inprogress")) as f:
    assert len(f.readlines()) == 2
  run_generation_job(
      src, out, EchoGenerator(), GenerationOptions(), JobConfig(shard_size=4, batch_size=1)
  )
  records = read_outputs(out)
  assert [r["id"] for r in records] == list(range(40))
