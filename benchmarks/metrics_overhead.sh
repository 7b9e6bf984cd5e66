#!/usr/bin/env bash
# The cost of omniserve's own metrics: the same benchmark against the embedded default served
# with `server.metrics: true` and `false`, one after the other in one invocation, then the
# overhead ratios (endpoint / bare library, p50) of both side by side.
#   benchmarks/metrics_overhead.sh [OUT_DIR] [extra `python -m benchmarks run` arguments...]
# Default: chat, embeddings and transcription, 15 s of load each; MODES="off on" reverses the
# order. Needs nothing else serving on 8892 / 8080. Writes OUT_DIR/{on,off}/report.json and
# OUT_DIR/comparison.json.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmarks/results/metrics-overhead-$(date -u +%Y%m%d-%H%M%S)}"
shift || true
extra=("$@")
[ ${#extra[@]} -gt 0 ] || extra=(--scenarios chat,embeddings,transcription --duration 15)
mkdir -p "$out"
off_config="$out/embedded-metrics-off.yaml"
.venv/bin/python - "$off_config" <<'EOF'
import sys, yaml
doc = yaml.safe_load(open("configs/embedded.yaml"))
doc["applications"][0]["args"].setdefault("server", {})["metrics"] = False
yaml.safe_dump(doc, open(sys.argv[1], "w"), sort_keys=False)
EOF
for mode in ${MODES:-on off}; do
  config=configs/embedded.yaml
  [ "$mode" = off ] && config="$off_config"
  scripts/serve.sh "$config" >"$out/serve-$mode.log" 2>&1 &
  server=$!
  .venv/bin/python -m benchmarks run --base-url http://127.0.0.1:8892 --wait-ready 300 \
    --out "$out/$mode" "${extra[@]}" || true
  kill -TERM "$server" 2>/dev/null || true   # serve.sh stops serve run and its Ray head
  wait "$server" 2>/dev/null || true
done
.venv/bin/python - "$out" <<'EOF'
import json, sys
out = sys.argv[1]
reports = {m: json.load(open(f"{out}/{m}/report.json")) for m in ("on", "off")}
rows = {}
for name, on in reports["on"]["scenarios"].items():
    off = reports["off"]["scenarios"].get(name, {})
    r_on, r_off = (on.get("overhead") or {}).get("ratio"), (off.get("overhead") or {}).get("ratio")
    rows[name] = {"ratio_metrics_on": r_on, "ratio_metrics_off": r_off,
                  "on_over_off": round(r_on / r_off, 3) if r_on and r_off else None}
json.dump(rows, open(f"{out}/comparison.json", "w"), indent=2)
print(f"{'scenario':<15}{'metrics on':>12}{'metrics off':>13}{'on / off':>10}")
for name, r in rows.items():
    print(f"{name:<15}{r['ratio_metrics_on'] or '-':>12}{r['ratio_metrics_off'] or '-':>13}{r['on_over_off'] or '-':>10}")
EOF
