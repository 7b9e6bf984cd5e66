"""``python -m benchmarks compare``: two endpoints side by side on the same requests, paired.

For a change whose cost is a few per cent (e.g. omniserve's own metrics), two separate benchmark
runs cannot show it on a shared machine: whichever runs second is 10–25 % faster here. This
command sends every request to endpoint A and to endpoint B back to back, alternating which goes
first (as the paired sequential phase does for endpoint and bare library), so that both sides see
the same background load, page cache and CPU frequency, at concurrency 1.

Per scenario, input and time metric it reports the p50 of A, the p50 of B, ``p50_ratio`` = p50 A ÷
p50 B, and the median and quartiles of the per-pair ratios ``a_i / b_i``; the scenario's
``ratio`` is the geometric mean over its inputs of the headline metric's ``p50_ratio`` (the same
definition as the overhead ratio of ``run``) and ``pair_ratio`` the same of the pair ratios'
medians (less moved by a slow stretch that hits both sides of a few pairs). Since the overhead
ratio of ``run`` is endpoint ÷ bare library, A ÷ B here is the ratio of A's overhead ratio to B's.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.environment import (
    default_audio,
    endpoint_models,
    load_average,
    machine_info,
    read_profile,
    request_ids,
    wait_ready,
)
from benchmarks.results import measure
from benchmarks.scenario import Context, Scenario, Settings
from benchmarks.scenarios import load_all
from benchmarks.stats import geometric_mean, summarize

REPORT_SCHEMA = "omniserve-benchmark-compare/1"


def _paired(scenario_a: Scenario, scenario_b: Scenario, repeats: int) -> list[tuple[Any, dict, dict]]:
    """Warm-up (two requests per input on each side), then ``repeats`` rounds of one request to
    each endpoint per input, the first of each pair alternating. Returns ``(input key, sample A,
    sample B)`` triples."""
    inputs = scenario_a.inputs()
    client_a, client_b = scenario_a.new_client(), scenario_b.new_client()
    pairs = []
    try:
        for _ in range(2):
            for inp in inputs:
                measure(scenario_a, client_a, inp)
                measure(scenario_b, client_b, inp)
        for r in range(repeats):
            for i, inp in enumerate(inputs):
                if (r + i) % 2:
                    b = measure(scenario_b, client_b, inp)
                    a = measure(scenario_a, client_a, inp)
                else:
                    a = measure(scenario_a, client_a, inp)
                    b = measure(scenario_b, client_b, inp)
                pairs.append((inp.key, a, b))
    finally:
        scenario_a.close_client(client_a)
        scenario_b.close_client(client_b)
    return pairs


def _quartiles(values: list[float]) -> dict | None:
    if not values:
        return None
    if len(values) < 2:
        return {"p25": values[0], "p50": values[0], "p75": values[0]}
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return {"p25": round(q1, 4), "p50": round(q2, 4), "p75": round(q3, 4)}


def _number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def compare_scenario(scenario_a: Scenario, scenario_b: Scenario, repeats: int) -> dict:
    """The comparison block of one scenario (see the module docstring). Pairs where either side
    failed are left out and counted in ``failed_pairs``."""
    pairs = _paired(scenario_a, scenario_b, repeats)
    ok = [(k, a, b) for k, a, b in pairs if a.get("ok") and b.get("ok")]
    by_input: dict[str, dict] = {}
    for key in dict.fromkeys(k for k, _, _ in pairs):
        mine = [(a, b) for k, a, b in ok if k == key]
        block = {}
        for metric in scenario_a.ratio_metrics:
            # pairs where both sides have the metric as one number (pooled list metrics such as
            # chat's itl_ms have no per-request value to pair)
            both = [(a[metric], b[metric]) for a, b in mine if _number(a.get(metric)) and _number(b.get(metric))]
            sa, sb = summarize(x for x, _ in both), summarize(y for _, y in both)
            block[metric] = {
                "a": sa,
                "b": sb,
                "p50_ratio": round(sa["p50"] / sb["p50"], 4) if sa and sb and sb["p50"] else None,
                "pair_ratios": _quartiles([x / y for x, y in both if y]),
            }
        by_input[key] = block
    heads = [b[scenario_a.headline] for b in by_input.values() if scenario_a.headline in b]
    return {
        "pairs": len(pairs),
        "failed_pairs": len(pairs) - len(ok),
        "errors": sorted({s.get("error") for _, a, b in pairs for s in (a, b) if not s.get("ok")} - {None})[:5],
        "headline": scenario_a.headline,
        "ratio": _r(geometric_mean(h["p50_ratio"] for h in heads if h["p50_ratio"])),
        "pair_ratio": _r(geometric_mean(h["pair_ratios"]["p50"] for h in heads if h["pair_ratios"])),
        "by_input": by_input,
    }


def compare(args) -> int:
    """The ``compare`` command; returns the exit code (0 report written; 1 a scenario failed;
    2 an endpoint not ready)."""
    a_url, b_url = (u.rstrip("/").removesuffix("/v1") for u in (args.a, args.b))
    for url in (a_url, b_url):
        status, _ = wait_ready(url, args.wait_ready)
        if status != 200:
            print(f"compare: {url}/readyz answered {status or 'nothing'} after {args.wait_ready} s", flush=True)
            return 2
    machine = machine_info()
    settings = Settings(repeats=args.repeats, timeout_s=args.timeout)
    profile = read_profile(args.config)
    ids = request_ids(profile, endpoint_models(a_url), {})
    registry = load_all()
    results: dict[str, Any] = {}
    failed = False
    for name in args.scenario_names:
        t0 = time.perf_counter()
        contexts = [
            Context(base_url=u, settings=settings, profile=profile, model_ids=ids, audio_files=default_audio())
            for u in (a_url, b_url)
        ]
        try:
            results[name] = compare_scenario(registry[name](contexts[0]), registry[name](contexts[1]), args.repeats)
        except Exception as exc:  # the scenario's block says why; the others still run
            failed = True
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        results[name]["wall_s"] = round(time.perf_counter() - t0, 1)
        print(f"compare: {name}: A / B = {results[name].get('ratio')} in {results[name]['wall_s']} s", flush=True)
    report = {
        "schema": REPORT_SCHEMA,
        "a": {"base_url": a_url, "label": args.a_label},
        "b": {"base_url": b_url, "label": args.b_label},
        "repeats": args.repeats,
        "machine": machine,
        "load_avg_end": load_average(),
        "scenarios": results,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(report, indent=2))
    print(
        f"{'scenario':<15}{'p50 ' + args.a_label + ' / ' + args.b_label:>30}{'median pair ratio':>20}   pairs (failed)"
    )
    for name, r in results.items():
        print(
            f"{name:<15}{r.get('ratio')!s:>30}{r.get('pair_ratio')!s:>20}   {r.get('pairs')} ({r.get('failed_pairs')})"
        )
    return 1 if failed else 0
