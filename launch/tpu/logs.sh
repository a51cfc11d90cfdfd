#!/usr/bin/env bash
# Streams the log of a run started by launch/tpu/run.sh (Ctrl-C stops following, not the run).
#
#   launch/tpu/logs.sh --name=ls-v4 --zone=us-central2-b --log=na_ar [--worker=all]
#
# Flags: --name, --zone, --log (default: langshift), --worker (default 0: process 0 prints the
# progress and the evaluations; all: every worker, interleaved), --project, --dry-run.
set -euo pipefail
# shellcheck source=launch/tpu/lib.sh
source "$(dirname "$0")/lib.sh"

NAME="" ZONE="" LOG=langshift WORKER=0
for arg in "$@"; do
  case $arg in
    --log=*) LOG=${arg#*=} ;;
    --worker=*) WORKER=${arg#*=} ;;
    *) common_flag "$arg" || die "unknown argument $arg (see the header of $0)" ;;
  esac
done
require name "$NAME"
require zone "$ZONE"
need_gcloud
mapfile -t LOCATION < <(location_flags)
run "$GCLOUD" compute tpus tpu-vm ssh "$NAME" --worker="$WORKER" "${LOCATION[@]}" \
  --command="tail -n +1 -F ~/langshift-logs/$(quote "$LOG").log"
