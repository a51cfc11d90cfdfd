#!/usr/bin/env bash
# Native alignment's CPU variant with the expert behind a real OpenAI-compatible server: llama.cpp
# (launch/llama_server.sh) serving the SmolLM2-135M-Instruct GGUF, driven by the seed-rewrite stage
# through langshift's OpenAI backend (N requests in flight, retries, failures recorded).
#
#   launch/native_align_real_expert.sh [WORKDIR] [--dry-run] [-- EXTRA langshift.main FLAGS]
#
# The server starts on a free port and stops when the script ends; the stage summaries (counts,
# seconds, generated tokens/s) are printed by the run and kept in WORKDIR/stages/*.json.
set -euo pipefail
cd "$(dirname "$0")/.."

WORKDIR=workdir/na_cpu_llama_expert DRY_RUN=0 EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --) shift; EXTRA=("$@"); break ;;
    -*) echo "native_align_real_expert.sh: unknown flag '$1'" >&2; exit 2 ;;
    *) WORKDIR=$1 ;;
  esac
  shift
done
PORT=$(.venv/bin/python -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
CMD=(.venv/bin/python -m langshift.main --config=experiments/native_align_ar.py:cpu
     "--workdir=$WORKDIR"
     --config.native_align.expert.backend=openai
     "--config.native_align.expert.base_url=http://127.0.0.1:$PORT/v1"
     --config.native_align.expert.model=smollm2
     --config.native_align.expert.hf_dir=.cache/smollm2-135m-instruct
     --config.native_align.expert.max_concurrency=4
     --config.native_align.expert.timeout_s=600
     "${EXTRA[@]}")
if [ "$DRY_RUN" = 1 ]; then
  echo "+ launch/llama_server.sh start --port=$PORT -- --n_threads 2"
  echo "+ ${CMD[*]}"
  echo "+ launch/llama_server.sh stop --port=$PORT"
  exit 0
fi
launch/llama_server.sh start "--port=$PORT" -- --n_threads 2 >/dev/null
trap 'launch/llama_server.sh stop --port=$PORT >/dev/null' EXIT
"${CMD[@]}"
