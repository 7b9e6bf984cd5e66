#!/usr/bin/env bash
# Set up omniserve in ./.venv from the committed lock (idempotent: a second run only checks).
#   scripts/setup.sh            requirements/serve.txt: runtime + the piper TTS extra (the embedded default)
#   scripts/setup.sh test       requirements/test.txt: also the test tools, the GPU-profile backends (for
#                               tiny-checkpoint tests), locust, and Debian tools the tests use
#                               (espeak-ng, kubectl, jq, prometheus)
# Every package comes at the exact version its lock names, installed by the pinned uv
# (`uv pip sync`), so a release published upstream changes nothing until the locks are regenerated
# with `python3 scripts/lock.py` (see that file).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
lock=requirements/serve.txt
[ "${1:-}" = "test" ] && lock=requirements/test.txt

# The locks must have been made from today's pyproject.toml: one line naming the fix otherwise.
"$PY" scripts/lock.py --check

[ -x .venv/bin/python ] || "$PY" -m venv .venv
# uv, at the version the lock pins, bootstrapped with pip (a single wheel, no dependencies).
uv_pin=$(grep -m1 '^uv==' "$lock")
[ "$(.venv/bin/uv --version 2>/dev/null | cut -d' ' -f2)" = "${uv_pin#uv==}" ] \
  || .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "$uv_pin"

if [ "${1:-}" = "test" ]; then
  # Debian tools the tests use: kubectl (offline kustomize rendering), jq, espeak-ng (speech),
  # prometheus (a real scrape of the metrics export).
  need=""
  for tool in kubectl:kubectl jq:jq espeak-ng:espeak-ng prometheus:prometheus; do
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

# pip's package sources on this machine (find-links, extra indexes), which uv does not read itself.
mapfile -t sources < <("$PY" scripts/lock.py --sources)
# The lock, then omniserve itself, editable (requirements/editable.txt), without dependencies: the
# lock already holds them. torch is pinned as 2.13.0+cpu in both CPU locks, so no CUDA build and no
# nvidia-* package can come in. The test set is installed with `sync`, which also removes what the
# lock does not name (CI's environment is exactly the lock). The serve set, a subset of the test
# set at the same versions, is installed with `install --no-deps`: every package it names at its
# pinned version, while a developer's test environment stays whole.
if [ "$lock" = requirements/test.txt ]; then
  UV_PYTHON=.venv/bin/python .venv/bin/uv pip sync -q "${sources[@]}" "$lock" requirements/editable.txt
else
  UV_PYTHON=.venv/bin/python .venv/bin/uv pip install -q --no-deps "${sources[@]}" -r "$lock" -r requirements/editable.txt
fi
.venv/bin/python scripts/fix_torchaudio.py
echo "setup: .venv ready from $lock ($(.venv/bin/python -c 'import torch, ray; print("torch", torch.__version__, "ray", ray.__version__)'))"
