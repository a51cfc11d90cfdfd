"""launch/tpu/: the exact gcloud commands of a whole TPU VM lifecycle (dry run) for a v4-32 and a
v5e-16, the workdir mapped onto the gcsfuse mount, and one-line errors without gcloud."""

import os
import subprocess

import pytest
from launch_testing import REPO, commands, fake_tool, run

SLICES = {
    "v4-32": dict(zone="us-central2-b", type="v4-32", version="tpu-ubuntu2204-base"),
    "v5e-16": dict(zone="us-west4-a", type="v5litepod-16", version="v2-alpha-tpuv5-lite"),
}
TPUS = ["gcloud", "compute", "tpus"]
MAIN_ARGS = [
    "--config=experiments/native_align_ar.py",
    "--workdir=gs://my-bucket/runs/na ar",
    "--config.native_align.corpus.path=gs://my-bucket/ar/*.jsonl",
]


@pytest.mark.parametrize("slice_name", SLICES)
def test_lifecycle_commands(slice_name):
  s = SLICES[slice_name]
  where = [f"--zone={s['zone']}", "--project=my-proj"]
  common = ["--name=ls-tpu", where[0], where[1], "--dry-run"]
  vm, queued = [*TPUS, "tpu-vm"], [*TPUS, "queued-resources"]

  out = run("launch/tpu/create.sh", *common, f"--accelerator-type={slice_name}", "--spot").stdout
  type_flag = f"--accelerator-type={s['type']}"
  assert commands(out) == [
      [*vm, "create", "ls-tpu", *where, type_flag, f"--version={s['version']}", "--spot"]
  ]
  out = run("launch/tpu/create.sh", *common, f"--accelerator-type={slice_name}", "--queued").stdout
  assert commands(out) == [
      [*queued, "create", "ls-tpu", "--node-id=ls-tpu", *where, type_flag]
      + [f"--runtime-version={s['version']}"],
      [*queued, "describe", "ls-tpu", *where, "--format=value(state.state)"],
  ]

  out = run("launch/tpu/setup.sh", *common, "--bucket=my-bucket", env={"TMPDIR": "/t"}).stdout
  pack, scp, ssh = commands(out)
  assert pack[:4] == ["git", "-C", REPO, "ls-files"]
  assert pack[-2:] == ["-czf", "/t/langshift-src.tar.gz"]
  assert scp == [
      *vm,
      "scp",
      "/t/langshift-src.tar.gz",
      "ls-tpu:langshift-src.tar.gz",
      "--worker=all",
      *where,
  ]
  assert ssh == [
      *vm,
      "ssh",
      "ls-tpu",
      "--worker=all",
      *where,
      "--command=mkdir -p ~/langshift && tar xzf ~/langshift-src.tar.gz -C ~/langshift"
      " && bash ~/langshift/launch/tpu/worker_setup.sh --bucket=my-bucket",
  ]

  out = run("launch/tpu/run.sh", *common, "--", *MAIN_ARGS).stdout
  start, follow = commands(out)
  assert start[:-1] == [*vm, "ssh", "ls-tpu", "--worker=all", *where]
  assert start[-1] == (
      "--command=cd ~/langshift && mkdir -p ~/langshift-logs && { nohup setsid .venv/bin/python"
      " -m langshift.main --config=experiments/native_align_ar.py"
      " '--workdir=/gcs/my-bucket/runs/na ar'"
      " '--config.native_align.corpus.path=gs://my-bucket/ar/*.jsonl'"
      " > ~/langshift-logs/'na ar'.log 2>&1 < /dev/null & echo $! > ~/langshift-logs/'na ar'.pid; }"
  )
  assert follow == [
      *vm,
      "ssh",
      "ls-tpu",
      "--worker=0",
      *where,
      "--command=tail -n +1 -F ~/langshift-logs/'na ar'.log",
  ]

  out = run("launch/tpu/stop.sh", *common, "--log=na").stdout
  assert commands(out) == [
      [*vm, "ssh", "ls-tpu", "--worker=all", *where]
      + ["--command=if [ -f ~/langshift-logs/na.pid ]; then"
         ' kill -TERM "$(cat ~/langshift-logs/na.pid)" || true; fi']
  ]  # fmt: skip
  out = run("launch/tpu/delete.sh", *common).stdout
  assert commands(out) == [[*vm, "delete", "ls-tpu", *where, "--quiet"]]
  out = run("launch/tpu/delete.sh", *common, "--queued").stdout
  assert commands(out) == [[*queued, "delete", "ls-tpu", *where, "--force", "--quiet"]]


def test_the_remote_start_command_runs_langshift_with_the_arguments_intact(tmp_path):
  """The --command that run.sh sends, run by a local shell with HOME as the worker's home."""
  home = tmp_path / "home"
  fake_tool(home / "langshift" / ".venv" / "bin", "python", 'printf "%s\\n" "$@"\n')
  out = run(
      "launch/tpu/run.sh", "--name=t", "--zone=z", "--no-follow", "--dry-run", "--", *MAIN_ARGS
  ).stdout
  remote = commands(out)[0][-1].removeprefix("--command=")
  subprocess.run(
      ["bash", "-c", remote + "; wait"], env=dict(os.environ, HOME=str(home)), check=True
  )
  log = (home / "langshift-logs" / "na ar.log").read_text().splitlines()
  assert log == [
      "-m",
      "langshift.main",
      MAIN_ARGS[0],
      "--workdir=/gcs/my-bucket/runs/na ar",
      MAIN_ARGS[2],
  ]
  assert (home / "langshift-logs" / "na ar.pid").read_text().strip().isdigit()


def test_worker_setup_installs_python_311_and_mounts_the_bucket():
  out = run("launch/tpu/worker_setup.sh", "--bucket=my-bucket", "--dry-run").stdout
  lines = commands(out)
  assert lines[1][1:] == ["venv", "--python", "3.11", ".venv"]
  assert " ".join(lines[2][1:]) == "pip install --python .venv/bin/python --quiet -e . jax[tpu]"
  assert " ".join(lines[-1]) == (
      "gcsfuse --implicit-dirs --rename-dir-limit=200000 --metadata-cache-ttl-secs=0"
      " my-bucket /gcs/my-bucket"
  )


def test_one_line_errors_without_gcloud_or_its_configuration(tmp_path):
  args = ["--name=t", "--zone=z", "--accelerator-type=v4-32"]
  result = run("launch/tpu/create.sh", *args, env={"GCLOUD": str(tmp_path / "none")}, check=False)
  assert result.returncode == 1 and result.stdout == ""
  assert result.stderr == (
      "create.sh: gcloud not found: install the Google Cloud CLI, or rehearse with --dry-run\n"
  )
  calls = tmp_path / "calls"
  gcloud = fake_tool(tmp_path, "gcloud", f'echo "$@" >> {calls}\n')  # prints no account
  result = run("launch/tpu/create.sh", *args, env={"GCLOUD": gcloud}, check=False)
  assert result.stderr == "create.sh: gcloud is not logged in: run gcloud auth login\n"
  gcloud = fake_tool(
      tmp_path, "gcloud", f'echo "$@" >> {calls}\n[[ $3 == account ]] && echo me@example.com\n'
  )
  result = run("launch/tpu/delete.sh", "--name=t", "--zone=z", env={"GCLOUD": gcloud}, check=False)
  assert result.stderr.startswith("delete.sh: gcloud has no project: pass --project=ID")
  assert "tpu-vm delete" not in calls.read_text()  # nothing ran

  # Configured: the command runs, with the project gcloud has.
  gcloud = fake_tool(
      tmp_path, "gcloud", f'echo "$@" >> {calls}\n[[ $1 == config ]] && echo "value-of-$3"\ntrue\n'
  )
  run("launch/tpu/delete.sh", "--name=t", "--zone=z", env={"GCLOUD": gcloud})
  assert calls.read_text().splitlines()[-1] == (
      "compute tpus tpu-vm delete t --zone=z --project=value-of-project --quiet"
  )
  result = run("launch/tpu/create.sh", "--dry-run", "--name=t", check=False)
  assert result.stderr == "create.sh: missing --zone\n"
  result = run("launch/tpu/run.sh", "--dry-run", "--zone=z", check=False)
  assert result.stderr == "run.sh: missing --name\n"
  result = run(
      "launch/tpu/create.sh",
      "--name=t",
      "--zone=z",
      "--accelerator-type=v9",
      "--dry-run",
      check=False,
  )
  assert result.stderr.startswith("create.sh: --accelerator-type=v9: expected e.g. v4-32, v5e-16")
