#!/usr/bin/env bash
# Set up (if needed) and serve a profile on a local Ray cluster of its own. Default: the embedded
# default (CPU, bundled small models) on http://127.0.0.1:8892. Ctrl-C stops it, cluster included.
#   scripts/serve.sh [configs/PROFILE.yaml]
# Metrics (Ray's, and omniserve's ray_omniserve_* series) on http://127.0.0.1:8080/metrics, the
# export port of Ray and KubeRay; OMNISERVE_METRICS_PORT picks another.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"   # local single-user cluster (Ray 2.60 enables token auth by default)
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"        # the embedded default's weights are installed packages
export TOKENIZERS_PARALLELISM=false

# `serve run` cannot pin the metrics export port of a cluster it starts itself, so the head is
# started here, on a free GCS port, in a process group and a Ray temp dir of its own (other Ray
# clusters on the machine, and `ray.init()` finding "the current cluster", are left alone), and
# `serve run` joins it. The group is stopped when this script ends.
gcs_port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export RAY_ADDRESS="127.0.0.1:$gcs_port"
setsid .venv/bin/ray start --head --block --port="$gcs_port" --metrics-export-port="${OMNISERVE_METRICS_PORT:-8080}" \
  --include-dashboard=false --disable-usage-stats --temp-dir=/tmp/ray-omniserve >/dev/null &
head=$!
serve=""
# Stop `serve run` (TERM, then KILL after 10 s), then the head's whole process group.
stop() {
  if [ -n "$serve" ]; then
    kill -TERM "$serve" 2>/dev/null || true
    for _ in $(seq 20); do kill -0 "$serve" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$serve" 2>/dev/null || true
  fi
  kill -TERM -- "-$head" 2>/dev/null || return 0
  for _ in $(seq 20); do kill -0 -- "-$head" 2>/dev/null || return 0; sleep 0.5; done
  kill -KILL -- "-$head" 2>/dev/null || true
}
trap stop EXIT
trap 'exit 130' INT TERM
until .venv/bin/python -c 'import ray, sys; ray.init(address=sys.argv[1], logging_level="ERROR")' "$RAY_ADDRESS" \
  >/dev/null 2>&1; do
  kill -0 "$head" 2>/dev/null || { echo "serve.sh: the Ray head did not start" >&2; exit 1; }
  sleep 1
done
# in the background (so that Ctrl-C or a TERM reaches this script, whose exit stops both)
.venv/bin/serve run "${1:-configs/embedded.yaml}" &
serve=$!
wait "$serve"
