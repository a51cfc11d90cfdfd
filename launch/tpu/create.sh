#!/usr/bin/env bash
# Creates a Cloud TPU VM, or a queued resource that becomes one when capacity frees up.
#
#   launch/tpu/create.sh --name=ls-v4 --zone=us-central2-b --accelerator-type=v4-32 [--spot]
#   launch/tpu/create.sh --name=ls-v5e --zone=us-west4-a --accelerator-type=v5e-16 --queued --spot
#
# Flags: --name, --zone, --accelerator-type (v4-32, v5e-16, v5p-8, v6e-8, ...),
#   --version (runtime version; default by generation: v4 tpu-ubuntu2204-base, v5e
#   v2-alpha-tpuv5-lite, v5p v2-alpha-tpuv5, v6e v2-alpha-tpuv6e), --spot (preemptible capacity:
#   langshift resumes from its checkpoints), --queued (queued resource; waits until it is ACTIVE
#   unless --no-wait), --project, --dry-run (print the gcloud commands, run nothing).
set -euo pipefail
# shellcheck source=launch/tpu/lib.sh
source "$(dirname "$0")/lib.sh"

NAME="" ZONE="" TYPE="" VERSION="" SPOT=0 QUEUED=0 WAIT=1
for arg in "$@"; do
  case $arg in
    --accelerator-type=*) TYPE=${arg#*=} ;;
    --version=*) VERSION=${arg#*=} ;;
    --spot) SPOT=1 ;;
    --queued) QUEUED=1 ;;
    --no-wait) WAIT=0 ;;
    *) common_flag "$arg" || die "unknown argument $arg (see the header of $0)" ;;
  esac
done
require name "$NAME"
require zone "$ZONE"
require accelerator-type "$TYPE"
TYPE=$(accelerator_type "$TYPE")
VERSION=${VERSION:-$(default_runtime_version "$TYPE")}
need_gcloud
mapfile -t LOCATION < <(location_flags)
spot=()
((SPOT)) && spot=(--spot)

if ((QUEUED)); then
  run "$GCLOUD" compute tpus queued-resources create "$NAME" --node-id="$NAME" "${LOCATION[@]}" \
    --accelerator-type="$TYPE" --runtime-version="$VERSION" "${spot[@]}"
  ((WAIT)) || exit 0
  describe=("$GCLOUD" compute tpus queued-resources describe "$NAME" "${LOCATION[@]}"
    --format='value(state.state)')
  if ((DRY_RUN)); then
    echo "# repeated every 30 s until it prints ACTIVE:"
    run "${describe[@]}"
    exit 0
  fi
  while true; do
    state=$("${describe[@]}")
    echo "queued resource $NAME: $state"
    case $state in
      ACTIVE) break ;;
      FAILED | SUSPENDED) die "queued resource $NAME is $state" ;;
    esac
    sleep 30
  done
else
  run "$GCLOUD" compute tpus tpu-vm create "$NAME" "${LOCATION[@]}" \
    --accelerator-type="$TYPE" --version="$VERSION" "${spot[@]}"
fi
