#!/usr/bin/env bash
# Set up (if needed) and serve a profile on a local Ray cluster. Default: the embedded default
# (CPU, bundled small models) on http://127.0.0.1:8892. Ctrl-C stops it.
#   scripts/serve.sh [configs/PROFILE.yaml]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"   # local single-user cluster (Ray 2.60 enables token auth by default)
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"        # the embedded default's weights are installed packages
export TOKENIZERS_PARALLELISM=false
exec .venv/bin/serve run "${1:-configs/embedded.yaml}"
