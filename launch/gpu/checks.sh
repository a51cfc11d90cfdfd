#!/usr/bin/env bash
# The GPU check: everything langshift should confirm on an NVIDIA GPU, in one short run
# (a 470-second budget by default; its duration on a GPU has not been measured yet), one summary
# line per check:
#
#   model_parity     tests/models on the GPU (logits against transformers, bf16 vs fp32, ...)
#   cudnn_attention  cuDNN flash attention against the XLA path (launch/gpu/attention_parity.py)
#   train_step_1b    the ~1B bf16 train step with cuDNN attention: tokens/s and MFU against the
#                    vendor peak (langshift/bench/train_step.py; docs/benchmarks.md)
#   lep_propagation  LEP propagation of one Llama-3-sized matrix (128,256 + 46k tokens x 4096;
#                    langshift/bench/embedding_propagation.py)
#   generation       the rewrite-generation benchmark (langshift/bench/generation.py), when the
#                    module exists
#
#   bash launch/gpu/checks.sh [--budget=470] [--logs=DIR] [--dry-run]
#
# A failing check is reported and the next one runs; each has a time limit, and the whole run a
# budget (--budget seconds): a check that would start with less than CHECKS_MIN_SECONDS (15)
# left is skipped. Full outputs: DIR/<check>.log (default: $OUT when set, else
# /tmp/langshift-checks). Exit status: the number of checks that failed or timed out.
# PYTHON picks the interpreter (default .venv/bin/python).
# shellcheck disable=SC2329  # the summaries below are called through check's SUMMARIZE argument
set -euo pipefail
# shellcheck source=launch/gpu/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.."

BUDGET=470 LOGS=${OUT:-/tmp/langshift-checks}
for arg in "$@"; do
  case $arg in
    --budget=*) BUDGET=${arg#*=} ;;
    --logs=*) LOGS=${arg#*=} ;;
    --dry-run) DRY_RUN=1 ;;
    *) die "unknown argument $arg (see the header of $0)" ;;
  esac
done
PY=${PYTHON:-$(default_python)}
MIN_SECONDS=${CHECKS_MIN_SECONDS:-15}
START=$SECONDS
FAILED=0
SUMMARY=()
mkdir -p "$LOGS"

report() {
  echo "$1"
  SUMMARY+=("$1")
}

# check NAME LIMIT SUMMARIZE COMMAND...: runs COMMAND under min(LIMIT, budget left), then prints
# "check NAME: <outcome> in <s>s; <what SUMMARIZE read from its log>".
check() {
  local name=$1 limit=$2 summarize=$3
  shift 3
  local left=$((BUDGET - (SECONDS - START)))
  if ((left < MIN_SECONDS)); then
    report "check $name: skipped (time budget of ${BUDGET}s spent)"
    return 0
  fi
  ((limit <= left)) || limit=$left
  if ((DRY_RUN)); then
    echo "# $name: at most ${limit}s"
    run timeout --kill-after=10 "$limit" "$@"
    return 0
  fi
  local log=$LOGS/$name.log t0=$SECONDS rc=0 outcome detail
  timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1 || rc=$?
  case $rc in
    0) outcome=ok ;;
    124 | 137) outcome="TIMEOUT (limit ${limit}s)" ;;
    *) outcome="FAIL (exit $rc)" ;;
  esac
  ((rc == 0)) || FAILED=$((FAILED + 1))
  detail=$("$summarize" "$log" 2>/dev/null) || detail=""
  report "check $name: $outcome in $((SECONDS - t0))s; ${detail:-see $log}"
}

# Summaries: the line of each log that carries the figure.
last_line() { grep -v '^[[:space:]]*$' "$1" | tail -n 1; }
pytest_line() { grep -E '[0-9]+ (passed|failed)|error' "$1" | tail -n 1; }
parity_lines() { grep -E 'relative error' "$1" | sed 's/^.*, //' | paste -sd ';' -; }
step_line() { grep -E '^tokens_per_s=' "$1" | tail -n 1; }
propagation_line() {
  echo "$(grep -E 'propagation, one matrix' "$1" | sed 's/^ *//;s/  */ /g') (numpy, host CPU)"
}

if ((DRY_RUN)); then
  echo "# preflight"
  run nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  run "$PY" -c "import jax; print(jax.devices())"
else
  need_tool nvidia-smi "no NVIDIA driver on this machine"
  gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | sed -n 1p)
  devices=$("$PY" -c "import jax; print(jax.default_backend(), jax.devices()[0].device_kind)" \
    2>"$LOGS/preflight.log") || devices=""
  echo "gpu: $gpu; jax: ${devices:-none (see $LOGS/preflight.log)}"
  [[ $devices == gpu* ]] ||
    die "$PY: jax sees no GPU; install its CUDA build: pip install -U 'jax[cuda12]'"
fi

# The 8-device mesh test needs 8 devices (the CPU suite simulates them); one GPU has one.
check model_parity 100 pytest_line env JAX_PLATFORMS=cuda "$PY" -m pytest -q -p no:cacheprovider \
  tests/models -k "not 8_device_mesh"
check cudnn_attention 60 parity_lines "$PY" launch/gpu/attention_parity.py --candidate=cudnn
check train_step_1b 150 step_line "$PY" -m langshift.bench.train_step --preset=1b \
  --dtype=bfloat16 --attention=cudnn --batch=8 --seq_len=2048 --remat=minimal --steps=5 --warmup=2
check lep_propagation 80 propagation_line "$PY" -m langshift.bench.embedding_propagation \
  --product_dtype=float32
if [[ -f langshift/bench/generation.py ]]; then
  check generation 90 last_line "$PY" -m langshift.bench.generation
else
  report "check generation: skipped: not present (langshift/bench/generation.py)"
fi

if ! ((DRY_RUN)); then
  echo "--- summary (${gpu%%,*}, $((SECONDS - START))s; logs in $LOGS)"
  printf '%s\n' "${SUMMARY[@]}"
fi
exit "$FAILED"
