# shellcheck shell=bash
# Shared by launch/gpu/*.sh (sourced): dry-run printing and checks for the tools a script needs.
# The printing helpers are the TPU scripts' own (launch/tpu/lib.sh).
# shellcheck source=launch/tpu/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../tpu/lib.sh"

# The interpreter of the repository's venv (launch/setup_env.sh), else python3.
default_python() {
  local repo
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  if [[ -x $repo/.venv/bin/python ]]; then
    echo "$repo/.venv/bin/python"
  else
    echo python3
  fi
}

need_tool() {
  ((DRY_RUN)) && return 0
  command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2"
}
