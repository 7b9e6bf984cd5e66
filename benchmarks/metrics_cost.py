"""The cost of recording omniserve's series, measured where it is paid: inside a Serve replica.

    .venv/bin/python -m benchmarks.metrics_cost [--calls N] [--out FILE]

Starts a local Ray cluster of its own (1 CPU), runs one Serve replica that builds
:class:`deployments.metrics.Metrics` as the ingress does, and times ``N`` recordings of what one
REST request records (``request`` + ``tokens``: the request counter, the duration histogram and the
token counter, with Serve's default tags), with the series on and off (the per-key usage totals,
kept either way, are left out: they are the same in both). Prints and writes
``{"on_us": …, "off_us": …, "cost_us": …}``: microseconds per request. Divided by a request's
latency it bounds what the series can add to an overhead ratio, without the noise of two
endpoints on a shared machine (``benchmarks/metrics_overhead.sh`` measures that end to end).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import ray
from ray import serve

from deployments.metrics import Metrics


def _time_recording(calls: int) -> dict[str, float]:
    out = {}
    for label, enabled in (("off", False), ("on", True)):
        metrics = Metrics(enabled=enabled)
        best = float("inf")
        for _ in range(5):  # best of five rounds: the machine's other work only ever adds
            t0 = time.perf_counter()
            for i in range(calls):
                metrics.request("/v1/embeddings", "all-minilm-l6-v2", 200, f"team-{i % 4}", 0.036)
                metrics.tokens("all-minilm-l6-v2", f"team-{i % 4}", 12)
            best = min(best, (time.perf_counter() - t0) / calls)
        out[f"{label}_us"] = round(best * 1e6, 2)
    out["cost_us"] = round(out["on_us"] - out["off_us"], 2)
    return out


@serve.deployment(ray_actor_options={"num_cpus": 0})
class Probe:
    """A replica that times the recordings (Serve's replica context gives the default tags)."""

    def __call__(self, calls: int) -> dict[str, float]:
        return _time_recording(calls)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.metrics_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20000, help="recordings per round (default 20000)")
    parser.add_argument("--out", default=None, help="write the result as JSON here too")
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        handle = serve.run(Probe.bind(), name="metrics-cost", route_prefix=None)
        result = {"calls": args.calls, **handle.remote(args.calls).result(timeout_s=600)}
    finally:
        serve.shutdown()
        ray.shutdown()
    print(json.dumps(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
