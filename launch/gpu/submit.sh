#!/usr/bin/env bash
# Submits launch/gpu/slurm.sbatch: langshift on several GPU nodes, one process per node.
#
#   launch/gpu/submit.sh --nodes=4 --gpus-per-node=8 --partition=gpu --time=24:00:00 -- \
#     --config=experiments/native_align_ar.py --workdir=/shared/na_ar
#
# Flags: --nodes, --gpus-per-node, --partition, --time, --account, --job-name, --dry-run (print
# the sbatch command, submit nothing). Everything after `--` goes to langshift.main.
#
# Fit check: before submitting, `python -m langshift.aot` compiles every program of the run for
# the nodes' GPUs here (target <gpu-type>x<gpus-per-node>[x<nodes>], e.g. h100x8x2) and stops
# with the one-line reason when one does not fit (launch/tpu/lib.sh fit_check). --gpu-type
# (default h100), --fit-model=llama3_8b (repeatable, or KEY=PRESET: shapes for checkpoints that
# are not on this machine), --no-fit-check skips it.
set -euo pipefail
# shellcheck source=launch/gpu/lib.sh
source "$(dirname "$0")/lib.sh"

NODES="" GPUS="" GPU_TYPE=h100 FIT=1 FIT_MODELS=() extra=()
while (($#)); do
  case $1 in
    --gpu-type=*) GPU_TYPE=${1#*=} ;;
    --fit-model=*) FIT_MODELS+=("${1#*=}") ;;
    --no-fit-check) FIT=0 ;;
    --nodes=*) NODES=${1#*=} ;;
    --gpus-per-node=*) GPUS=${1#*=} ;;
    --partition=* | --time=* | --account=* | --job-name=*) extra+=("$1") ;;
    --dry-run) DRY_RUN=1 ;;
    --) shift; break ;;
    *) die "unknown argument $1 (langshift.main's arguments go after --)" ;;
  esac
  shift
done
require nodes "$NODES"
require gpus-per-node "$GPUS"
(($#)) || die "missing the langshift.main arguments after -- (--config=... --workdir=...)"
need_tool sbatch "this machine is not a SLURM login node"
if ((FIT)); then
  target="${GPU_TYPE}x$GPUS"
  ((NODES > 1)) && target+="x$NODES"
  fit_check "$target" "$@"
fi
run sbatch --nodes="$NODES" --ntasks-per-node=1 --gpus-per-node="$GPUS" "${extra[@]}" \
  "$(dirname "$0")/slurm.sbatch" "$@"
