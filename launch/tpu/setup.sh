#!/usr/bin/env bash
# Copies this working tree to every worker of a TPU VM and installs it there (Python 3.11 venv,
# langshift, jax[tpu]); with --bucket, mounts that GCS bucket at /gcs/<bucket> on every worker
# with gcsfuse, the shared POSIX directory the recipes' stages need (launch/tpu/worker_setup.sh).
#
#   launch/tpu/setup.sh --name=ls-v4 --zone=us-central2-b --bucket=my-bucket
#
# Flags: --name, --zone, --bucket, --project, --dry-run (print the commands, run nothing).
# Rerun it after changing the code: files are replaced, the venv is kept.
set -euo pipefail
# shellcheck source=launch/tpu/lib.sh
source "$(dirname "$0")/lib.sh"

NAME="" ZONE="" BUCKET=""
for arg in "$@"; do
  case $arg in
    --bucket=*) BUCKET=${arg#*=} ;;
    *) common_flag "$arg" || die "unknown argument $arg (see the header of $0)" ;;
  esac
done
require name "$NAME"
require zone "$ZONE"
need_gcloud
mapfile -t LOCATION < <(location_flags)
REPO=$(cd "$(dirname "$0")/../.." && pwd)
TARBALL=${TMPDIR:-/tmp}/langshift-src.tar.gz

# Tracked and untracked-but-not-ignored files: the working tree as it is, without .venv or caches.
pack="git -C $(quote "$REPO") ls-files -z -co --exclude-standard"
pack+=" | tar -C $(quote "$REPO") --null -T - -czf $(quote "$TARBALL")"
if ((DRY_RUN)); then
  echo "$pack"
else
  command -v git >/dev/null || die "git not found: it lists the files to copy"
  bash -c "set -o pipefail; $pack"
fi

install="mkdir -p ~/langshift && tar xzf ~/langshift-src.tar.gz -C ~/langshift"
install+=" && bash ~/langshift/launch/tpu/worker_setup.sh"
if [[ -n $BUCKET ]]; then
  install+=" --bucket=$(quote "$BUCKET")"
fi
run "$GCLOUD" compute tpus tpu-vm scp "$TARBALL" "$NAME:langshift-src.tar.gz" --worker=all \
  "${LOCATION[@]}"
run "$GCLOUD" compute tpus tpu-vm ssh "$NAME" --worker=all "${LOCATION[@]}" --command="$install"
