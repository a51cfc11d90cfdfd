#!/usr/bin/env bash
# Runs on each TPU worker (launch/tpu/setup.sh copies the tree to ~/langshift and calls it):
# a Python 3.11 venv (the TPU images ship 3.10; uv fetches 3.11), langshift and jax[tpu], and,
# with --bucket=B, B mounted at /gcs/B by gcsfuse.
#
# gcsfuse settings: --implicit-dirs shows folders written by other tools; --rename-dir-limit lets
# orbax rename a finished checkpoint folder into place; metadata caching is off so that a stage
# marker written by process 0 is seen by the other hosts right after the barrier.
#
# Flags: --bucket=B, --dry-run (print the commands, run nothing).
set -euo pipefail
# shellcheck source=launch/tpu/lib.sh
source "$(dirname "$0")/lib.sh"

BUCKET=""
for arg in "$@"; do
  case $arg in
    --bucket=*) BUCKET=${arg#*=} ;;
    --dry-run) DRY_RUN=1 ;;
    *) die "unknown argument $arg" ;;
  esac
done
cd "$(dirname "$0")/../.."
UV=$HOME/.local/bin/uv

if ((DRY_RUN)) || [[ ! -x $UV ]]; then
  run python3 -m pip install --user --quiet uv
fi
if ((DRY_RUN)) || [[ ! -x .venv/bin/python ]]; then
  run "$UV" venv --python 3.11 .venv
fi
run "$UV" pip install --python .venv/bin/python --quiet -e . "jax[tpu]"

[[ -n $BUCKET ]] || exit 0
MOUNT=/gcs/$BUCKET
if ((DRY_RUN)) || ! command -v gcsfuse >/dev/null; then
  # Google's apt repository for gcsfuse, as its installation guide gives it.
  repo="deb [signed-by=/usr/share/keyrings/cloud.google.asc] https://packages.cloud.google.com/apt"
  repo+=" gcsfuse-$(lsb_release -c -s 2>/dev/null || echo jammy) main"
  run sudo bash -c "echo $(quote "$repo") > /etc/apt/sources.list.d/gcsfuse.list"
  run sudo curl -fsSL -o /usr/share/keyrings/cloud.google.asc \
    https://packages.cloud.google.com/apt/doc/apt-key.gpg
  run sudo apt-get update -qq
  run sudo apt-get install -y -qq gcsfuse
fi
run sudo mkdir -p "$MOUNT"
run sudo chown "$(id -u):$(id -g)" "$MOUNT"
if ((DRY_RUN)) || ! mountpoint -q "$MOUNT"; then
  run gcsfuse --implicit-dirs --rename-dir-limit=200000 --metadata-cache-ttl-secs=0 \
    "$BUCKET" "$MOUNT"
fi
