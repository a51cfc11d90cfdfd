#!/usr/bin/env bash
# Asks a run started by launch/tpu/run.sh to stop on every worker: SIGTERM, which langshift treats
# as a preemption (a checkpoint at the next step, then exit); rerunning run.sh resumes it.
#
#   launch/tpu/stop.sh --name=ls-v4 --zone=us-central2-b --log=na_ar
#
# Flags: --name, --zone, --log (default: langshift), --project, --dry-run.
set -euo pipefail
# shellcheck source=launch/tpu/lib.sh
source "$(dirname "$0")/lib.sh"

NAME="" ZONE="" LOG=langshift
for arg in "$@"; do
  case $arg in
    --log=*) LOG=${arg#*=} ;;
    *) common_flag "$arg" || die "unknown argument $arg (see the header of $0)" ;;
  esac
done
require name "$NAME"
require zone "$ZONE"
need_gcloud
mapfile -t LOCATION < <(location_flags)
# shellcheck disable=SC2088  # the tilde is for the workers' shell
pid="~/langshift-logs/$(quote "$LOG").pid"
run "$GCLOUD" compute tpus tpu-vm ssh "$NAME" --worker=all "${LOCATION[@]}" \
  --command="if [ -f $pid ]; then kill -TERM \"\$(cat $pid)\" || true; fi"
