"""Every error that reaches the user of `python -m langshift.main` is one last line naming the
file, key or value (its traceback in the workdir's error log): a bad record met mid-run (after
the in-flight checkpoint finished), a workdir another process holds, a bad setting, an unknown
config key."""

import glob
import json
import os
import subprocess
import sys

import hf_testing
import pytest
from test_workdir_lock import kill, start_holder

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "data"))
import data_fixtures  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BAD_LINE = 61


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
  root = tmp_path_factory.mktemp("cli_errors")
  tok_dir = data_fixtures.write_bpe_tokenizer(root / "model")
  from tokenizers import Tokenizer

  vocab = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json")).get_vocab_size()
  hf_testing.make_hf_model(
      "llama31", root / "model", vocab_size=vocab, bos_token_id=None, eos_token_id=None
  )
  lines = [json.dumps({"text": t}) for t in data_fixtures.CORPUS]
  lines[BAD_LINE - 1] = '{"text": broken'
  (root / "train.jsonl").write_text("\n".join(lines) + "\n")
  data_fixtures.write_jsonl(root / "held.jsonl", [{"text": t} for t in data_fixtures.CORPUS[:5]])
  return root


def _main(inputs, workdir, *overrides):
  args = [
      sys.executable,
      "-m",
      "langshift.main",
      "--config=experiments/demo.py",
      f"--workdir={workdir}",
      f"--config.init_from_hf={inputs / 'model'}",
      f"--config.data.sources.ru.path={inputs / 'train.jsonl'}",
      "--config.data.shuffle=False",
      "--config.data.tokenize_batch_size=4",
      f"--config.evals.heldout.data.sources.ru.path={inputs / 'held.jsonl'}",
      "--config.train.seq_len=32",
      "--config.train.global_batch_size=8",
      "--config.train.steps=40",
      "--config.checkpoint.every_steps=1",
      "--config.checkpoint.keep=2",
      "--config.checkpoint.async_save=True",
      *overrides,
  ]
  return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)


def _last_line(result):
  assert result.returncode != 0
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  return lines[-1]


def test_a_bad_record_mid_run_is_the_last_line_and_the_checkpoint_in_flight_is_whole(
    inputs, tmp_path
):
  workdir = tmp_path / "run"
  line = _last_line(_main(inputs, workdir))
  assert line.startswith(
      f"langshift: error: {inputs / 'train.jsonl'}:{BAD_LINE}: malformed JSON line: "
  )
  assert line.endswith(f"(traceback: {workdir}/langshift-error.log; --verbose shows it here)")
  steps = sorted(int(n) for n in os.listdir(workdir / "checkpoints") if n.isdigit())
  assert steps and steps[-1] > 1  # it failed mid-run, after some checkpoints
  assert not glob.glob(str(workdir / "checkpoints" / "*tmp*"))
  with open(workdir / "langshift-error.log") as f:
    assert "Traceback (most recent call last)" in f.read()
  with open(workdir / "result.json") as f:
    result = json.load(f)
  assert result["status"] == "failed" and f"{BAD_LINE}: malformed JSON line" in result["error"]


def test_a_workdir_another_process_holds_is_a_one_line_error_naming_it(inputs, tmp_path):
  holder = start_holder(tmp_path / "run")
  try:
    line = _last_line(_main(inputs, tmp_path / "run"))
  finally:
    kill(holder)
  assert line.startswith(
      f"langshift: error: {tmp_path / 'run'} is in use by another process: host "
  )
  assert f", pid {holder.pid}, started " in line


def test_a_bad_setting_is_a_one_line_error_naming_the_key(inputs, tmp_path):
  line = _last_line(_main(inputs, tmp_path / "run", "--config.optimizer.learning_rate=-0.01"))
  assert line.startswith("langshift: error: config.optimizer.learning_rate=-0.01; expected > 0 (")
  assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_an_unknown_config_key_is_a_one_line_error_naming_the_override(inputs, tmp_path):
  line = _last_line(_main(inputs, tmp_path / "run", "--config.train.stepz=3"))
  assert line.startswith("langshift: error: --config.train.stepz=3: no such config key (")
  assert 'Did you mean "steps"' in line
