#!/usr/bin/env bash
# A longer schema fuzz of a running endpoint than the suite's bounded one (tests/test_failures.py):
# schemathesis over every operation of its /openapi.json, failing on a 5xx or on a status code or
# content type the document does not declare. Outside CI; its last figures are in the README.
#   scripts/fuzz.sh [BASE_URL] [MAX_EXAMPLES]     defaults: http://127.0.0.1:8892 (scripts/serve.sh), 50
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-http://127.0.0.1:8892}
scripts/setup.sh test >/dev/null
exec .venv/bin/st run "$base/openapi.json" --url "$base" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance \
  --max-examples "${2:-50}" --phases examples,coverage,fuzzing --request-timeout 120 --workers 2 --no-color
