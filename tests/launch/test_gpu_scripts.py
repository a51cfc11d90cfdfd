"""launch/gpu/: the single-node and SLURM commands (dry run), the sbatch template run with stand-in
SLURM tools (it must hand each process the JAX variables the engine reads), and checks.sh: its
commands, and that a failing or slow check is reported while the others still run."""

import os
import sys

from launch_testing import REPO, commands, fake_tool, run

MAIN_ARGS = ["--config=experiments/lep_ru.py:model=mistral", "--workdir=/shared/runs/lep"]


def test_single_node_and_submit_commands(tmp_path):
  out = run(
      "launch/gpu/single_node.sh", "--gpus=0,1,2,3", "--python=py", "--dry-run", "--", *MAIN_ARGS
  ).stdout
  assert commands(out) == [
      ["env", "CUDA_VISIBLE_DEVICES=0,1,2,3", "py", "-m", "langshift.main", *MAIN_ARGS]
  ]
  out = run(
      "launch/gpu/submit.sh",
      "--nodes=4",
      "--gpus-per-node=8",
      "--partition=gpu",
      "--time=24:00:00",
      "--dry-run",
      "--no-fit-check",  # tests/launch/test_fit_check.py
      "--",
      *MAIN_ARGS,
  ).stdout
  assert commands(out) == [
      [
          "sbatch",
          "--nodes=4",
          "--ntasks-per-node=1",
          "--gpus-per-node=8",
          "--partition=gpu",
          "--time=24:00:00",
          f"{REPO}/launch/gpu/slurm.sbatch",
          *MAIN_ARGS,
      ]
  ]
  bare = {"PATH": f"{tmp_path}:/usr/bin:/bin"}  # no sbatch, no nvidia-smi
  result = run(
      "launch/gpu/submit.sh",
      "--nodes=2",
      "--gpus-per-node=8",
      "--",
      *MAIN_ARGS,
      env=bare,
      check=False,
  )
  assert result.stderr == "submit.sh: sbatch not found: this machine is not a SLURM login node\n"
  result = run("launch/gpu/single_node.sh", "--", *MAIN_ARGS, env=bare, check=False)
  assert result.stderr == "single_node.sh: nvidia-smi not found: no NVIDIA driver on this machine\n"
  result = run("launch/gpu/submit.sh", "--nodes=2", "--dry-run", "--", *MAIN_ARGS, check=False)
  assert result.stderr == "submit.sh: missing --gpus-per-node\n"


def test_the_sbatch_template_gives_every_process_the_coordinator_variables(tmp_path):
  tools = tmp_path / "bin"
  fake_tool(
      tools,
      "scontrol",
      '[[ "$1 $2 $3" == "show hostnames gpu-[07-08]" ]] && ' "printf 'gpu-07\\ngpu-08\\n'\n",
  )
  # srun: one copy of the command per task, each with its rank, as SLURM does.
  fake_tool(
      tools,
      "srun",
      "while [[ $1 == --* ]]; do shift; done\n"
      'for ((i = 0; i < SLURM_NTASKS; i++)); do SLURM_PROCID=$i "$@" & done\nwait\n',
  )
  # python: reports what langshift.parallel.distributed would pass to jax.distributed.
  report = tmp_path / "report"
  fake_tool(
      tools,
      "python",
      f"""cd {REPO} && {sys.executable} -c '
import os, sys
from langshift.parallel import distributed as d
print(os.environ["JAX_COORDINATOR_ADDRESS"], d._env_int("JAX_NUM_PROCESSES"),
      d._env_int("JAX_PROCESS_ID"), *sys.argv[1:])' "$@" >> {report}
""",
  )
  env = {
      "PATH": f"{tools}:{os.environ['PATH']}",
      "PYTHON": str(tools / "python"),
      "SLURM_JOB_NODELIST": "gpu-[07-08]",
      "SLURM_NTASKS": "2",
      "SLURM_SUBMIT_DIR": REPO,
  }
  out = run("launch/gpu/slurm.sbatch", *MAIN_ARGS, env=env).stdout
  assert out == "langshift: 2 processes, coordinator gpu-07:12355\n"
  lines = sorted(report.read_text().splitlines())
  main = " ".join(["-m", "langshift.main", *MAIN_ARGS])
  assert lines == [f"gpu-07:12355 2 0 {main}", f"gpu-07:12355 2 1 {main}"]
  result = run("launch/gpu/slurm.sbatch", *MAIN_ARGS, env={"SLURM_JOB_NODELIST": ""}, check=False)
  assert result.returncode == 1 and "run this with sbatch" in result.stderr


def test_checks_commands():
  out = run("launch/gpu/checks.sh", "--dry-run", "--logs=/tmp/x", env={"PYTHON": "py"}).stdout
  lines = out.splitlines()
  assert [line for line in lines if line.startswith("# ")][1:] == [
      "# model_parity: at most 100s",
      "# cudnn_attention: at most 60s",
      "# train_step_1b: at most 150s",
      "# lep_propagation: at most 80s",
      *(
          ["# generation: at most 90s"]
          if os.path.exists(os.path.join(REPO, "langshift/bench/generation.py"))
          else []
      ),
  ]
  cmds = commands(out)
  assert cmds[2] == [
      "timeout",
      "--kill-after=10",
      "100",
      "env",
      "JAX_PLATFORMS=cuda",
      "py",
      "-m",
      "pytest",
      "-q",
      "-p",
      "no:cacheprovider",
      "tests/models",
      "-k",
      "not 8_device_mesh",
  ]
  assert cmds[3][3:] == ["py", "launch/gpu/attention_parity.py", "--candidate=cudnn"]
  assert cmds[4][3:] == [
      "py",
      "-m",
      "langshift.bench.train_step",
      "--preset=1b",
      "--dtype=bfloat16",
      "--attention=cudnn",
      "--batch=8",
      "--seq_len=2048",
      "--remat=minimal",
      "--steps=5",
      "--warmup=2",
  ]
  assert cmds[5][3:] == [
      "py",
      "-m",
      "langshift.bench.embedding_propagation",
      "--product_dtype=float32",
  ]


def test_checks_go_on_after_a_failure_and_keep_to_the_budget(tmp_path):
  tools = tmp_path / "bin"
  fake_tool(tools, "nvidia-smi", 'echo "NVIDIA H100 80GB HBM3, 81559 MiB, 550.54"\n')
  # A GPU machine in miniature: parity fails, the train step prints its figures, propagation
  # hangs past the budget, and generation would be next.
  fake_tool(
      tools,
      "python",
      """case "$*" in
  *"import jax"*) echo "gpu NVIDIA H100 80GB HBM3" ;;
  *pytest*) echo "F....."; echo "1 failed, 5 passed in 3.2s"; exit 1 ;;
  *attention_parity*) echo "cudnn vs xla, attention fwd+grad: relative error 3.1e-03 (ok)" ;;
  *train_step*) echo "tokens_per_s=41000.0 mfu=0.4123 step_s=0.3996 peak_rss_mib=5120" ;;
  *embedding_propagation*) exec sleep 30 ;;
  *) echo "unexpected: $*"; exit 3 ;;
esac
""",
  )
  env = {
      "PATH": f"{tools}:{os.environ['PATH']}",
      "PYTHON": str(tools / "python"),
      "CHECKS_MIN_SECONDS": "2",
  }
  result = run(
      "launch/gpu/checks.sh", "--budget=6", f"--logs={tmp_path / 'logs'}", env=env, check=False
  )
  lines = result.stdout.splitlines()
  assert lines[0] == "gpu: NVIDIA H100 80GB HBM3, 81559 MiB, 550.54; jax: gpu NVIDIA H100 80GB HBM3"
  summary = lines[lines.index(next(x for x in lines if x.startswith("--- summary"))) + 1 :]
  assert len(summary) == 5, result.stdout
  assert summary[0].startswith("check model_parity: FAIL (exit 1) in ")
  assert summary[0].endswith("; 1 failed, 5 passed in 3.2s")
  assert summary[1].endswith("; attention fwd+grad: relative error 3.1e-03 (ok)")
  assert summary[1].startswith("check cudnn_attention: ok in ")
  assert summary[2].endswith("; tokens_per_s=41000.0 mfu=0.4123 step_s=0.3996 peak_rss_mib=5120")
  assert summary[3].startswith("check lep_propagation: TIMEOUT (limit ")
  assert summary[4].startswith("check generation: skipped")
  assert result.returncode == 2  # parity and propagation
  assert (tmp_path / "logs" / "model_parity.log").read_text().startswith("F.....")

  fake_tool(tools, "python", 'echo "cpu cpu"\n')
  result = run("launch/gpu/checks.sh", f"--logs={tmp_path / 'logs'}", env=env, check=False)
  assert result.returncode == 1
  assert result.stderr.endswith(
      "jax sees no GPU; install its CUDA build: pip install -U 'jax[cuda12]'\n"
  )
