#!/usr/bin/env bash
# Runs `python -m langshift.main ...` on one machine with several NVIDIA GPUs: one process sees
# every GPU, and the config's mesh spreads over them (fsdp over all devices by default).
#
#   launch/gpu/single_node.sh [--gpus=0,1,2,3] -- --config=experiments/lep_ru.py --workdir=/data/lep
#
# Flags: --gpus (CUDA_VISIBLE_DEVICES; default all), --python (default .venv/bin/python),
# --dry-run (print the command, run nothing). jax needs its CUDA build:
# pip install -U "jax[cuda12]". Rerunning the same command after an interruption resumes.
set -euo pipefail
# shellcheck source=launch/gpu/lib.sh
source "$(dirname "$0")/lib.sh"

GPUS="" PY=""
while (($#)); do
  case $1 in
    --gpus=*) GPUS=${1#*=} ;;
    --python=*) PY=${1#*=} ;;
    --dry-run) DRY_RUN=1 ;;
    --) shift; break ;;
    *) die "unknown argument $1 (langshift.main's arguments go after --)" ;;
  esac
  shift
done
(($#)) || die "missing the langshift.main arguments after -- (--config=... --workdir=...)"
PY=${PY:-$(default_python)}
need_tool nvidia-smi "no NVIDIA driver on this machine"
if ! ((DRY_RUN)); then
  "$PY" -c "import jax; jax.devices('gpu')" >/dev/null 2>&1 ||
    die "$PY: jax sees no GPU; install its CUDA build: pip install -U 'jax[cuda12]'"
fi
env_args=()
[[ -n $GPUS ]] && env_args=("CUDA_VISIBLE_DEVICES=$GPUS")
run env "${env_args[@]}" "$PY" -m langshift.main "$@"
