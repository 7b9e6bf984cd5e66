"""``python -m benchmarks run``: baseline, endpoint scenarios, report and chart.

Imports :mod:`benchmarks.load` (Locust, gevent monkey-patching) first, before any HTTP client.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import benchmarks.load  # noqa: F401  (must come first: gevent monkey-patching)
from benchmarks import REPORT_SCHEMA, ROOT
from benchmarks.baseline import BareLibrary
from benchmarks.environment import (
    default_audio,
    endpoint_models,
    load_average,
    machine_info,
    read_profile,
    request_ids,
    wait_ready,
)
from benchmarks.flow import run_scenario
from benchmarks.results import short_error
from benchmarks.scenario import Context, Scenario, Settings
from benchmarks.scenarios import load_all
from benchmarks.stats import geometric_mean, ratio

OVERHEAD_DEFINITION = (
    "endpoint ÷ bare: p50 of the metric over `repeats` sequential requests (concurrency 1) to the "
    "endpoint, divided by p50 over as many calls of the bare library on the same input, each call "
    "paired with one request (alternating which goes first), both after one warm-up; `ratio` is "
    "the geometric mean over the scenario's inputs of the headline metric's ratio "
    "(1.0 = no serving overhead)"
)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def overhead(scenario: Scenario, endpoint: dict, baseline: dict | None) -> dict:
    """The scenario's ``overhead`` block (see :data:`OVERHEAD_DEFINITION`)."""
    base = {"metric": scenario.headline, "statistic": "p50", "definition": OVERHEAD_DEFINITION}
    if not baseline or baseline.get("status") != "ok":
        reason = (baseline or {}).get("reason") or (baseline or {}).get("error") or "baseline not run"
        return {**base, "ratio": None, "ratios": {}, "by_input": {}, "reason": reason}
    seq = endpoint["sequential"]["by_input"]
    bare = baseline["sequential"]["by_input"]
    by_input = {}
    for key, block in seq.items():
        b = (bare.get(key) or {}).get("metrics", {})
        by_input[key] = {m: ratio(block["metrics"].get(m), b.get(m)) for m in scenario.ratio_metrics}
    ratios = {m: _r(geometric_mean(v[m] for v in by_input.values())) for m in scenario.ratio_metrics}
    for m in scenario.ratio_metrics:  # inputs that do not carry the metric: use the pooled stats
        if ratios[m] is None:
            ratios[m] = ratio(endpoint["sequential"]["metrics"].get(m), baseline["sequential"]["metrics"].get(m))
    out = {**base, "ratio": ratios.get(scenario.headline), "ratios": ratios, "by_input": by_input}
    if out["ratio"] is None:
        out["reason"] = "no successful samples on one side"
    return out


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def summary(scenario: Scenario, result: dict) -> dict:
    """Compact numbers for tables: per load phase, p50/p95/p99 of each metric plus throughput."""
    phases = {}
    for name, ph in result["endpoint"]["load"].items():
        row = {"requests": ph["requests"], "errors": ph["errors"], "requests_per_s": ph["requests_per_s"]}
        row.update({rate: ph.get(rate) for rate in scenario.rates})
        for m, st in ph["metrics"].items():
            row[m] = {p: st[p] for p in ("p50", "p95", "p99")} if st else None
        phases[name] = row
    return {"overhead_ratio": result["overhead"]["ratio"], "phases": phases}


def run(args) -> int:
    """The ``run`` command; returns the process exit code (0: report written and every
    scenario ran; 1: a scenario failed to run; 2: the endpoint is not reachable/ready)."""
    t_start = time.perf_counter()
    machine = machine_info()  # before the load: its load average shows other work on the machine
    base_url = args.base_url.rstrip("/")
    if base_url.endswith("/v1"):
        base_url = base_url[:-3]
    smoke = args.smoke
    settings = Settings(
        duration_s=args.duration if args.duration is not None else (4.0 if smoke else 30.0),
        concurrency=args.concurrency if args.concurrency is not None else (2 if smoke else 4),
        repeats=args.repeats if args.repeats is not None else (2 if smoke else 5),
        max_requests=args.max_requests,
        timeout_s=args.timeout,
        smoke=smoke,
        admission_clients=args.admission_clients,
        admission_hold_s=args.admission_hold,
    )
    registry = load_all()
    names = args.scenario_names
    stamp = datetime.now(timezone.utc)
    out_dir = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / stamp.strftime("%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=True)

    log(f"waiting for {base_url}/readyz (up to {args.wait_ready} s)")
    status, _ = wait_ready(base_url, args.wait_ready)
    if status != 200:
        log(f"{base_url}/readyz answered {status or 'nothing'} after {args.wait_ready} s; not benchmarking")
        return 2
    served = endpoint_models(base_url)
    profile, profile_error = None, None
    if args.config:
        try:
            profile = read_profile(args.config)
        except (OSError, ValueError) as exc:
            profile_error = short_error(exc)
    overrides = dict(kv.split("=", 1) for kv in args.model)
    audio = [Path(a) for a in args.audio] if args.audio else default_audio()
    ctx = Context(
        base_url=base_url,
        settings=settings,
        profile=profile,
        baseline_threads=args.baseline_threads,
        model_ids=request_ids(profile, served, overrides),
        audio_files=audio,
    )
    scenarios = {n: registry[n](ctx) for n in names}

    # ---------------------------------------------------------------- baseline process
    unavailable = {n: s.baseline_unavailable() for n, s in scenarios.items()}
    want = args.baseline if args.baseline is not None else any(why is None for why in unavailable.values())
    bare: BareLibrary | None = None
    skipped_reason = None
    if not want:
        skipped_reason = "--no-baseline" if args.baseline is False else "no bare library importable here"
    elif profile is None:
        skipped_reason = profile_error or "no profile"
    elif all(why is not None for why in unavailable.values()):
        skipped_reason = "no bare library importable here"
    else:
        bare = BareLibrary(
            args.config,
            settings,
            audio,
            args.baseline_threads,
            out_dir / "baseline.log",
            setup_timeout_s=args.baseline_timeout,
        )

    # ---------------------------------------------------------------- scenarios, one after another
    results: dict[str, Any] = {}
    failed = False
    try:
        for name, scenario in scenarios.items():
            log(f"{name}: {scenario.route}, {settings.concurrency} users, {settings.duration_s} s")
            t0 = time.perf_counter()
            result: dict[str, Any] = {
                "name": name,
                "title": scenario.title,
                "route": scenario.route,
                "description": " ".join((type(scenario).__doc__ or "").split()),
                "settings": scenario.describe(),
                "headline": scenario.headline,
                "metrics": list(scenario.metrics),
                "rates": list(scenario.rates),
            }
            try:
                result["inputs"] = {i.key: i.about for i in scenario.inputs()}
                outcome = run_scenario(scenario, bare)
                result["endpoint"] = outcome["endpoint"]
                result["baseline"] = outcome["baseline"] or {"status": "skipped", "reason": skipped_reason}
                result.update({k: v for k, v in outcome.items() if k not in ("endpoint", "baseline")})
                result["status"] = "ok"
            except Exception as exc:
                failed = True
                result.update(status="error", error=short_error(exc))
                log(f"{name}: failed: {result['error']}")
            if result["status"] == "ok":
                result["overhead"] = overhead(scenario, result["endpoint"], result["baseline"])
                result["summary"] = summary(scenario, result)
            result["wall_s"] = round(time.perf_counter() - t0, 2)
            results[name] = result
            log(
                f"{name}: {result['status']} in {result['wall_s']} s"
                + (f", overhead ratio {result['overhead']['ratio']}" if result["status"] == "ok" else "")
            )
    finally:
        if bare is not None:
            bare.close()

    # ---------------------------------------------------------------- report
    report = {
        "schema": REPORT_SCHEMA,
        "created": stamp.isoformat(timespec="seconds"),
        "command": " ".join(["python -m benchmarks", *sys.argv[1:]]),
        "settings": {
            "base_url": base_url,
            "scenarios": names,
            "duration_s": settings.duration_s,
            "concurrency": settings.concurrency,
            "repeats": settings.repeats,
            "max_requests": settings.max_requests,
            "timeout_s": settings.timeout_s,
            "smoke": smoke,
            "baseline": bare is not None,
            "baseline_threads": args.baseline_threads,
        },
        "endpoint": {"base_url": base_url, "models": served, "readyz": status, "requested_ids": ctx.model_ids},
        "profile": profile and {k: profile[k] for k in ("path", "sha256", "cascade", "models")},
        "profile_error": profile_error,
        "profile_matches_endpoint": (all(m["id"] in served for m in profile["models"]) if profile and served else None),
        "machine": machine,
        "load_avg_end": load_average(),
        "scenarios": results,
        "wall_s": None,
        "files": {},
    }
    from benchmarks.chart import render

    report_path, chart_path = out_dir / "report.json", out_dir / "chart.png"
    report["files"] = {"report": str(report_path), "chart": str(chart_path)}
    report["wall_s"] = round(time.perf_counter() - t_start, 2)
    log("rendering the chart")
    render(report, chart_path)
    report_path.write_text(json.dumps(report, indent=1))
    print(format_table(report))
    print(f"report: {report_path}\nchart:  {chart_path}")
    return 1 if failed else 0


def format_table(report: dict) -> str:
    """A Markdown table of every load phase (the README's results table)."""
    lines = [
        "| scenario | phase | metric | p50 | p95 | p99 | throughput | errors | overhead (endpoint ÷ bare) |",
        "| --- | --- | --- | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for name, r in report["scenarios"].items():
        if r.get("status") != "ok":
            lines.append(f"| {name} | — | — | | | | | | {r.get('status')}: {r.get('error', '')} |")
            continue
        ov = r["overhead"]
        ratios = ", ".join(f"{m} {v:.3g}" for m, v in ov["ratios"].items() if v is not None) or ov.get("reason", "")
        for phase, row in r["summary"]["phases"].items():
            tput = [f"{row['requests_per_s']} req/s"] + [f"{row[k]} {k.replace('_per_s', '/s')}" for k in r["rates"]]
            first = True
            for m in r["metrics"]:
                st = row.get(m)
                if not st:
                    continue
                lines.append(
                    f"| {name if first else ''} | {phase if first else ''} | {m} | {st['p50']} | "
                    f"{st['p95']} | {st['p99']} | {', '.join(tput) if first else ''} | "
                    f"{row['errors'] if first else ''} | {ratios if first else ''} |"
                )
                first = False
            ratios = ""  # once per scenario
    return "\n".join(lines)
