#!/usr/bin/env bash
# Deletes a TPU VM (or, with --queued, the queued resource and its TPU VM).
#
#   launch/tpu/delete.sh --name=ls-v4 --zone=us-central2-b [--queued]
#
# The workdir in the bucket stays. Flags: --name, --zone, --queued, --project, --dry-run.
set -euo pipefail
# shellcheck source=launch/tpu/lib.sh
source "$(dirname "$0")/lib.sh"

NAME="" ZONE="" QUEUED=0
for arg in "$@"; do
  case $arg in
    --queued) QUEUED=1 ;;
    *) common_flag "$arg" || die "unknown argument $arg (see the header of $0)" ;;
  esac
done
require name "$NAME"
require zone "$ZONE"
need_gcloud
mapfile -t LOCATION < <(location_flags)
if ((QUEUED)); then
  run "$GCLOUD" compute tpus queued-resources delete "$NAME" "${LOCATION[@]}" --force --quiet
else
  run "$GCLOUD" compute tpus tpu-vm delete "$NAME" "${LOCATION[@]}" --quiet
fi
