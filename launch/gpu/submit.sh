#!/usr/bin/env bash
# Submits launch/gpu/slurm.sbatch: langshift on several GPU nodes, one process per node.
#
#   launch/gpu/submit.sh --nodes=4 --gpus-per-node=8 --partition=gpu --time=24:00:00 -- \
#     --config=experiments/native_align_ar.py --workdir=/shared/na_ar
#
# Flags: --nodes, --gpus-per-node, --partition, --time, --account, --job-name, --dry-run (print
# the sbatch command, submit nothing). Everything after `--` goes to langshift.main.
set -euo pipefail
# shellcheck source=launch/gpu/lib.sh
source "$(dirname "$0")/lib.sh"

NODES="" GPUS="" extra=()
while (($#)); do
  case $1 in
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
run sbatch --nodes="$NODES" --ntasks-per-node=1 --gpus-per-node="$GPUS" "${extra[@]}" \
  "$(dirname "$0")/slurm.sbatch" "$@"
