#!/usr/bin/env bash
# Starts the same `python -m langshift.main ...` on every worker of a TPU VM (--worker=all), in
# the background (it survives the ssh session), then follows worker 0's log (--no-follow: don't).
#
#   launch/tpu/run.sh --name=ls-v4 --zone=us-central2-b -- \
#     --config=experiments/native_align_ar.py --workdir=gs://my-bucket/runs/na_ar \
#     --config.init_from_hf=/gcs/my-bucket/models/Meta-Llama-3-8B
#
# Everything after `--` goes to langshift.main. A `--workdir=gs://B/P` becomes /gcs/B/P, the
# gcsfuse mount of launch/tpu/setup.sh --bucket=B: checkpoints, metrics and the stages' folders
# then live in the bucket, one directory that every worker sees. Rerunning the same command
# after a preemption resumes. Flags: --name, --zone, --project, --log=NAME (log
# ~/langshift-logs/NAME.log on each worker; default: the workdir's last component), --no-follow,
# --dry-run (print the commands, run nothing).
#
# Fit check: before anything starts, `python -m langshift.aot` compiles every program of the run
# for the slice here and the launch stops with the one-line reason when one does not fit
# (lib.sh fit_check). The slice is --accelerator-type=v4-32 (or v5e-16 / v5litepod-16), else
# gcloud's description of the TPU VM (a dry run without --accelerator-type skips the check).
# --fit-model=llama3_8b (repeatable, or KEY=PRESET) gives shapes for checkpoints that only the
# workers see; --no-fit-check skips the check.
set -euo pipefail
# shellcheck source=launch/tpu/lib.sh
source "$(dirname "$0")/lib.sh"

NAME="" ZONE="" LOG="" FOLLOW=1 TYPE="" FIT=1 FIT_MODELS=()
while (($#)); do
  case $1 in
    --log=*) LOG=${1#*=} ;;
    --no-follow) FOLLOW=0 ;;
    --accelerator-type=*) TYPE=${1#*=} ;;
    --fit-model=*) FIT_MODELS+=("${1#*=}") ;;
    --no-fit-check) FIT=0 ;;
    --) shift; break ;;
    *) common_flag "$1" || die "unknown argument $1 (langshift.main's arguments go after --)" ;;
  esac
  shift
done
require name "$NAME"
require zone "$ZONE"
(($#)) || die "missing the langshift.main arguments after -- (--config=... --workdir=...)"
ARGS=()
WORKDIR=""
for arg in "$@"; do
  if [[ $arg == --workdir=* ]]; then
    WORKDIR=$(gcs_to_mount "${arg#--workdir=}")
    arg=--workdir=$WORKDIR
  fi
  ARGS+=("$arg")
done
require workdir "$WORKDIR"
if [[ $WORKDIR != /gcs/* ]]; then
  echo "$(basename "$0"): note: workdir $WORKDIR is not on GCS; on a multi-host slice every" \
    "worker needs the same directory (use --workdir=gs://BUCKET/...)" >&2
fi
LOG=${LOG:-$(basename "$WORKDIR")}
need_gcloud
mapfile -t LOCATION < <(location_flags)
if ((FIT)); then
  if [[ -z $TYPE ]] && ((!DRY_RUN)); then
    TYPE=$("$GCLOUD" compute tpus tpu-vm describe "$NAME" "${LOCATION[@]}" \
      --format='value(acceleratorType)') ||
      die "could not describe TPU VM $NAME for the fit check (--no-fit-check skips it)"
  fi
  if [[ -n $TYPE ]]; then
    fit_check "$TYPE" "${ARGS[@]}"
  else
    echo "# fit check skipped: a dry run without --accelerator-type" >&2
  fi
fi

# shellcheck disable=SC2088  # the tilde is for the workers' shell
log="~/langshift-logs/$(quote "$LOG")"
start="cd ~/langshift && mkdir -p ~/langshift-logs && { nohup setsid .venv/bin/python -m"
start+=" langshift.main $(quote_all "${ARGS[@]}") > $log.log 2>&1 < /dev/null & echo \$! > $log.pid; }"
run "$GCLOUD" compute tpus tpu-vm ssh "$NAME" --worker=all "${LOCATION[@]}" --command="$start"
if ((FOLLOW)); then
  logs=("$(dirname "$0")/logs.sh" --name="$NAME" --zone="$ZONE" --log="$LOG")
  [[ -n $PROJECT ]] && logs+=(--project="$PROJECT")
  ((DRY_RUN)) && logs+=(--dry-run)
  exec "${logs[@]}"
fi
