# shellcheck shell=bash
# Shared by launch/tpu/*.sh (sourced): dry-run printing, the gcloud check, TPU names.
#
# Every script takes --dry-run: it then prints each command it would run, one per line, quoted so
# that the line can be pasted into a shell, and runs nothing (gcloud need not be installed).

DRY_RUN=0
PROJECT=""
GCLOUD=${GCLOUD:-gcloud}  # tests and wrappers may point this elsewhere

die() {
  echo "$(basename "$0"): $*" >&2
  exit 1
}

# One word as a shell reads it back: bare when safe, else single-quoted.
quote() {
  if [[ $1 =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

# A command line, each word quoted.
quote_all() {
  local out="" word
  for word in "$@"; do
    out+="$(quote "$word") "
  done
  printf '%s' "${out% }"
}

# Runs a command, or prints it under --dry-run.
run() {
  if ((DRY_RUN)); then
    quote_all "$@"
    echo
  else
    "$@"
  fi
}

# gcloud must be installed, logged in and have a project (outside --dry-run).
need_gcloud() {
  ((DRY_RUN)) && return 0
  command -v "$GCLOUD" >/dev/null 2>&1 ||
    die "gcloud not found: install the Google Cloud CLI, or rehearse with --dry-run"
  local account
  account=$("$GCLOUD" config get-value account 2>/dev/null) || true
  [[ -n $account ]] || die "gcloud is not logged in: run gcloud auth login"
  if [[ -z $PROJECT ]]; then
    PROJECT=$("$GCLOUD" config get-value project 2>/dev/null) || true
    [[ -n $PROJECT ]] || die "gcloud has no project: pass --project=ID or gcloud config set project ID"
  fi
}

# The flags every gcloud TPU command takes.
location_flags() {
  printf '%s\n' "--zone=$ZONE"
  if [[ -n $PROJECT ]]; then
    printf '%s\n' "--project=$PROJECT"
  fi
}

# The flags every TPU script takes (--name, --zone, --project, --dry-run); status 1 for any other,
# which the script's own parser then handles or refuses.
# shellcheck disable=SC2034  # NAME and ZONE are the calling script's variables
common_flag() {
  case $1 in
    --name=*) NAME=${1#*=} ;;
    --zone=*) ZONE=${1#*=} ;;
    --project=*) PROJECT=${1#*=} ;;
    --dry-run) DRY_RUN=1 ;;
    *) return 1 ;;
  esac
}

require() {
  local name=$1 value=$2
  [[ -n $value ]] || die "missing --$name"
}

# gcloud's accelerator type: v5e-16 is called v5litepod-16; others are as written.
accelerator_type() {
  case $1 in
    v5e-*) echo "v5litepod-${1#v5e-}" ;;
    v[2-6]*-[0-9]* | v5litepod-[0-9]* | v6e-[0-9]*) echo "$1" ;;
    *) die "--accelerator-type=$1: expected e.g. v4-32, v5e-16 (v5litepod-16), v5p-8, v6e-8" ;;
  esac
}

# The TPU software image for a generation (Cloud TPU's documented runtime versions).
default_runtime_version() {
  case $1 in
    v4-*) echo "tpu-ubuntu2204-base" ;;
    v5litepod-*) echo "v2-alpha-tpuv5-lite" ;;
    v5p-*) echo "v2-alpha-tpuv5" ;;
    v6e-*) echo "v2-alpha-tpuv6e" ;;
    *) die "no default runtime version for $1: pass --version" ;;
  esac
}

# gs://BUCKET/PATH as the gcsfuse mount on every worker (launch/tpu/worker_setup.sh mounts
# BUCKET at /gcs/BUCKET); other paths are unchanged.
gcs_to_mount() {
  if [[ $1 == gs://* ]]; then
    echo "/gcs/${1#gs://}"
  else
    echo "$1"
  fi
}

# The fit check before a launch: `python -m langshift.aot` compiles every program of the run
# for TARGET on this machine (compile-only devices; no accelerator, no weights read) and the
# launch stops with its one-line reason when a program does not fit or the check cannot run.
# It compiles the attention path the run is configured with (--attention=config). Its table
# goes to stderr. Arguments: TARGET, then langshift.main's arguments (--config and
# --config.* overrides are passed on), then FIT_MODELS (array, set by the caller): --model
# values for checkpoints that are not on this machine (presets such as llama3_8b).
# PYTHON: the interpreter (default: the repository's .venv-aot, .venv with the `aot` extra).
fit_check() {
  local target=$1 arg py status=0 out
  shift
  # The attention path the run is configured with: the check is of what will run.
  local args=(--target="$target" --attention=config)
  for arg in "$@"; do
    case $arg in --config=* | --config.*) args+=("$arg") ;; esac
  done
  for arg in "${FIT_MODELS[@]}"; do
    args+=(--model="$arg")
  done
  py=${PYTHON:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/.venv-aot/bin/python}
  echo "# fit check: $(quote_all "$py" -m langshift.aot "${args[@]}")" >&2
  out=$("$py" -m langshift.aot "${args[@]}" 2>&1) || status=$?
  grep -v '^langshift.aot: ' <<<"$out" | grep '^|\|^[a-z0-9x-]*: [0-9]' >&2 || true
  if ((status)); then
    local reason
    reason=$(grep -m 1 '^langshift.aot: ' <<<"$out" || true)
    reason=${reason#langshift.aot: }
    reason=${reason:-langshift.aot exited with status $status}
    die "fit check failed: $reason (--no-fit-check skips the check)"
  fi
}
