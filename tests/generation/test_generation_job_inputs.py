"""The generation job's input errors name file:line before any request, and its output folder
has one writer per share: a second job is refused naming the first, while the workers of one
job write side by side."""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from langshift.generation.interface import GenerationOptions
from langshift.generation.job import JobConfig, read_outputs, run_generation_job
from langshift.workdir_lock import LockHeld

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Echo:

  def __init__(self):
    self.seen = []

  def complete(self, prompts, options):
    self.seen += prompts
    return [p.upper() for p in prompts]

  def chat(self, conversations, options):
    self.seen += [c[-1]["content"] for c in conversations]
    return [c[-1]["content"][::-1] for c in conversations]


def _write(path, records):
  with open(path, "w", encoding="utf-8") as f:
    f.write("".join(json.dumps(r) + "\n" for r in records))


@pytest.mark.parametrize(
    "bad,match",
    [
        (
            {"id": 1, "text": "no prompt"},
            r"in\.jsonl:2: the record has neither 'messages' \(a conversation\) nor 'prompt'",
        ),
        ({"id": 1, "prompt": ["a", "b"]}, r"in\.jsonl:2: 'prompt' is a list; expected a string"),
        ({"id": 1, "messages": "hello"}, r"in\.jsonl:2: 'messages' is 'hello'; expected a non-emp"),
        (
            {"id": 1, "messages": [{"role": "user"}]},
            r"in\.jsonl:2: 'messages'\[0\] is \{'role': 'user'\}; expected \{'role': str, 'cont",
        ),
    ],
)
def test_a_bad_input_record_is_refused_naming_its_line_before_any_request(tmp_path, bad, match):
  src = str(tmp_path / "in.jsonl")
  _write(src, [{"id": 0, "prompt": "fine"}, bad, {"id": 2, "prompt": "fine"}])
  backend = Echo()
  with pytest.raises(ValueError, match=match):
    run_generation_job(src, str(tmp_path / "out"), backend, GenerationOptions())
  assert backend.seen == []


# A job whose backend, once it has a batch, says so and waits until `release` exists.
_CHILD = textwrap.dedent("""
    import os, sys, time
    from langshift.generation.interface import GenerationOptions
    from langshift.generation.job import JobConfig, run_generation_job

    class Waits:
      def complete(self, prompts, options):
        open(sys.argv[3] + ".started", "w").close()
        while not os.path.exists(sys.argv[3]):
          time.sleep(0.05)
        return [p.upper() for p in prompts]

    run_generation_job(sys.argv[1], sys.argv[2], Waits(), GenerationOptions(),
                       JobConfig(shard_size=4, batch_size=4, worker_index=int(sys.argv[4]),
                                 num_workers=int(sys.argv[5])))
""")


def _start_waiting_job(src, out, release, worker=0, workers=1):
  child = subprocess.Popen(
      [sys.executable, "-c", _CHILD, src, out, release, str(worker), str(workers)],
      env={**os.environ, "PYTHONPATH": REPO},
  )
  while not os.path.exists(release + ".started"):
    assert child.poll() is None, "the waiting job ended early"
    time.sleep(0.05)
  return child


def test_a_second_job_on_the_same_folder_is_refused_and_no_record_is_written_twice(tmp_path):
  src, out, release = str(tmp_path / "in.jsonl"), str(tmp_path / "out"), str(tmp_path / "go")
  _write(src, [{"id": i, "prompt": f"text {i}"} for i in range(12)])
  first = _start_waiting_job(src, out, release)
  try:
    with pytest.raises(LockHeld) as e:
      run_generation_job(src, out, Echo(), GenerationOptions(), JobConfig(shard_size=4))
    assert "\n" not in str(e.value) and f"pid {first.pid}" in str(e.value)
    assert "generation worker 0 of 1" in str(e.value)
  finally:
    open(release, "w").close()
    assert first.wait(timeout=120) == 0
  assert [r["id"] for r in read_outputs(out)] == list(range(12))  # each record once


def test_the_workers_of_one_job_write_one_folder_side_by_side(tmp_path):
  src, out, release = str(tmp_path / "in.jsonl"), str(tmp_path / "out"), str(tmp_path / "go")
  _write(src, [{"id": i, "prompt": f"text {i}"} for i in range(12)])
  worker0 = _start_waiting_job(src, out, release, worker=0, workers=2)
  try:  # worker 1 runs while worker 0 holds its share
    run_generation_job(
        src,
        out,
        Echo(),
        GenerationOptions(),
        JobConfig(shard_size=4, worker_index=1, num_workers=2),
    )
    # A one-worker job would write worker 0's shards too: refused, naming worker 0.
    with pytest.raises(LockHeld, match=rf"pid {worker0.pid}, .*\(generation worker 0 of 2\)"):
      run_generation_job(src, out, Echo(), GenerationOptions(), JobConfig(shard_size=4))
  finally:
    open(release, "w").close()
    assert worker0.wait(timeout=120) == 0
  assert [r["id"] for r in read_outputs(out)] == list(range(12))
