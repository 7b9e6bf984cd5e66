#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite: one local Ray cluster and one application,
# real models, real HTTP and WebSockets. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
export RAY_AUTH_MODE=disabled HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/ruff check .           # lint ([tool.ruff] in pyproject.toml)
.venv/bin/ruff format --check .  # formatting
.venv/bin/lint-imports           # the architecture contracts in pyproject.toml ([tool.importlinter])
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
