#!/usr/bin/env bash
# Does the queue drive the cluster? The admission scenario against a capacity smaller than its
# clients, served twice in one invocation: with `admission.scale_on_queue` true (waiting sessions
# raise the LLM's replica target, deployments/scaling) and false (only the sessions held count),
# then the time from the first `session.queued` to `session.created` of both side by side.
#   benchmarks/queue_scaling.sh [OUT_DIR]
# The endpoint: the embedded default with the LLM at one realtime session per replica and
# `autoscaling_config: {min_replicas: 1, max_replicas: 2, upscale_delay_s: 5}` (two SmolLM2
# replicas at num_cpus 0.5 fit the 2 cores beside the other models). CLIENTS (default 3) clients
# arrive 20 ms apart and each holds its session HOLD_S (default 90) seconds: with the queue
# driving scale-up the second client gets the second replica once it has loaded; without, it
# waits for the first to leave. MODES="off on" reverses the order. Needs nothing else serving on
# 8892 / 8080. Writes OUT_DIR/{on,off}/report.json and OUT_DIR/comparison.json.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmarks/results/queue-scaling-$(date -u +%Y%m%d-%H%M%S)}"
mkdir -p "$out"
for mode in on off; do
  .venv/bin/python - "$out/embedded-queue-$mode.yaml" "$mode" <<'EOF'
import sys, yaml
doc = yaml.safe_load(open("configs/embedded.yaml"))
args = doc["applications"][0]["args"]
args["admission"].update(sessions_per_replica={"llm": 1, "stt": 8, "tts": 8, "vad": 64}, scale_on_queue=sys.argv[2] == "on")
for model in args["models"]:
    if model["role"] == "llm":
        model["deployment"]["autoscaling_config"].update(max_replicas=2, upscale_delay_s=5, downscale_delay_s=60)
yaml.safe_dump(doc, open(sys.argv[1], "w"), sort_keys=False)
EOF
done
for mode in ${MODES:-on off}; do
  scripts/serve.sh "$out/embedded-queue-$mode.yaml" >"$out/serve-$mode.log" 2>&1 &
  server=$!
  .venv/bin/python -m benchmarks run --base-url http://127.0.0.1:8892 --wait-ready 300 --no-baseline \
    --scenarios admission --admission-clients "${CLIENTS:-3}" --admission-hold "${HOLD_S:-90}" \
    --duration 60 --out "$out/$mode" || true
  kill -TERM "$server" 2>/dev/null || true   # serve.sh stops serve run and its Ray head
  wait "$server" 2>/dev/null || true
done
.venv/bin/python - "$out" <<'EOF'
import json, sys
out = sys.argv[1]
rows = {}
for mode in ("on", "off"):
    block = json.load(open(f"{out}/{mode}/report.json"))["scenarios"]["admission"]["endpoint"]["sequential"]
    q = block["metrics"].get("queued_to_created_s") or {}
    rows[mode] = {
        "clients": block.get("clients"), "admitted": block.get("admitted"), "waited": q.get("n"),
        "queued_to_created_s": {k: q.get(k) for k in ("p50", "max", "mean")},
        "fifo_violations": block.get("fifo_violations"), "reservations_lost": block.get("reservations_lost"),
    }
json.dump(rows, open(f"{out}/comparison.json", "w"), indent=2)
print(f"{'scale_on_queue':<16}{'admitted':>10}{'waited':>8}{'queued->created p50 s':>24}{'max s':>8}")
for mode, r in rows.items():
    q = r["queued_to_created_s"]
    print(f"{mode:<16}{r['admitted']!s:>10}{r['waited']!s:>8}{q['p50']!s:>24}{q['max']!s:>8}")
EOF
