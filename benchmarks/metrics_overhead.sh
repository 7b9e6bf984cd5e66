#!/usr/bin/env bash
# The cost of omniserve's own metrics, in one run. One Serve instance serves the embedded default
# three times side by side, as applications that differ only in `server.metrics`: `/on` (true),
# `/off` and `/ctl` (false; traces off in all). `python -m benchmarks compare` sends every request
# to two of them, paired, alternating which goes first (benchmarks/compare.py):
#   on ÷ off   what the series cost, end to end (since the overhead ratio of `run` is endpoint ÷
#              bare library, this is the ratio of the two overhead ratios);
#   ctl ÷ off  the same comparison between two identical applications: the noise floor of
#              this measurement on this machine (an A/A run).
# Then, with the endpoint stopped, `python -m benchmarks.metrics_cost` times what recording one
# REST request's series costs inside a Serve replica (microseconds, no noise from the endpoint).
#   benchmarks/metrics_overhead.sh [OUT_DIR] [extra `python -m benchmarks compare` arguments...]
# Default: chat, embeddings and transcription, 20 pairs per input. Each application gets a third
# of every deployment's num_cpus so that all fit the 2 cores (Ray still gives every replica one
# intra-op thread). Needs nothing else serving on 8892 / 8080. Writes OUT_DIR/{on-off,ctl-off}/
# compare.json and OUT_DIR/metrics_cost.json.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmarks/results/metrics-overhead-$(date -u +%Y%m%d-%H%M%S)}"
shift || true
mkdir -p "$out"
config="$out/embedded-metrics-on-off-ctl.yaml"
.venv/bin/python - "$config" <<'EOF'
import copy, sys, yaml
doc = yaml.safe_load(open("configs/embedded.yaml"))
base = doc["applications"][0]
deployments = [m["deployment"] for m in base["args"]["models"]] + [base["args"]["ingress"]["deployment"]]
for d in deployments:
    d["num_cpus"] = round(d.get("num_cpus", 1) / 3, 4)
apps = []
for name, metrics in (("on", True), ("off", False), ("ctl", False)):
    app = copy.deepcopy(base)
    app.update(name=f"omniserve-{name}", route_prefix=f"/{name}")
    app["args"].setdefault("server", {})["metrics"] = metrics
    apps.append(app)
doc["applications"] = apps
yaml.safe_dump(doc, open(sys.argv[1], "w"), sort_keys=False)
EOF
scripts/serve.sh "$config" >"$out/serve.log" 2>&1 &
server=$!
stop() { kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; }  # serve.sh stops its Ray head
trap stop EXIT
url=http://127.0.0.1:8892
.venv/bin/python -m benchmarks compare --a "$url/on" --a-label "metrics on" --b "$url/off" --b-label "metrics off" \
  --wait-ready 900 --out "$out/on-off" "$@"
.venv/bin/python -m benchmarks compare --a "$url/ctl" --a-label "off (2nd app)" --b "$url/off" --b-label "metrics off" \
  --out "$out/ctl-off" "$@"
stop
trap - EXIT
.venv/bin/python -m benchmarks.metrics_cost --out "$out/metrics_cost.json"
