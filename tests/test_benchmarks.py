"""The benchmark harness (``benchmarks/``): ``--smoke`` runs against the session's application.

The scenarios run in two groups, one ``--smoke`` run each (REST; realtime and admission), so each
run stays well inside the per-test timeout: one run of all six took about 230 s here, most of it
the bare-library baselines loading their own models.

The run is a subprocess with this interpreter: Locust monkey-patches the standard library with
gevent, which must never happen inside the test process that runs Ray, and the bare-library
baseline loads its own copies of the models in further child processes (one per scenario) that
exit when done. The checks are on the report's shape (keys, p50/p95/p99 numeric, overhead ratios, a valid PNG),
not on its numbers.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import struct
import subprocess
import sys
import time

import pytest

from benchmarks.scenarios import load_all
from tests.conftest import ROOT

SMOKE_TIMEOUT_S = 270  # below the per-test timeout (300 s); a group's run takes about 2 minutes here
#: Every registered scenario; the REST ones must be among them.
SCENARIOS = tuple(load_all())
REST = ("chat", "transcription", "speech", "embeddings")
#: One smoke run per group; together they cover every scenario.
GROUPS = {"rest": REST, "voice": tuple(n for n in SCENARIOS if n not in REST)}


def _group(name: str) -> str:
    return next(g for g, names in GROUPS.items() if name in names)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("locust", "matplotlib")),
    reason="the bench extra (locust, matplotlib) is not installed",
)


def _numeric(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _percentiles_ok(stats) -> bool:
    return isinstance(stats, dict) and all(_numeric(stats.get(p)) for p in ("p50", "p95", "p99"))


@pytest.fixture(scope="module")
def smoke(omni, tmp_path_factory):
    """``smoke(group)``: the report of that group's ``--smoke`` run, run on first use (so its time
    counts against the test that first asks for it) and kept for the module."""
    runs: dict[str, dict] = {}

    def run(group: str) -> dict:
        if group not in runs:
            out = tmp_path_factory.mktemp(f"bench-{group}")
            cmd = [
                sys.executable,
                "-m",
                "benchmarks",
                "run",
                "--base-url",
                omni["base_url"],
                "--smoke",
                "--scenarios",
                ",".join(GROUPS[group]),
                "--out",
                str(out),
            ]
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
            t0 = time.monotonic()
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S)
            wall = time.monotonic() - t0
            assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            print(f"smoke benchmark ({group}): {wall:.1f} s\n{proc.stdout}")
            runs[group] = {"report": json.loads((out / "report.json").read_text()), "out": out, "wall_s": wall}
        return runs[group]

    return run


@pytest.mark.parametrize("group", GROUPS)
def test_report_names_models_profile_and_machine(smoke, group):
    r = smoke(group)["report"]
    assert r["schema"].startswith("omniserve-benchmark/")
    assert r["settings"]["smoke"] is True and r["settings"]["scenarios"] == list(GROUPS[group])
    assert set(REST) <= set(SCENARIOS) and sorted(sum(GROUPS.values(), ())) == sorted(SCENARIOS)
    assert r["command"].startswith("python -m benchmarks run")
    assert "smollm2-135m-instruct" in r["endpoint"]["models"]
    assert r["profile"]["path"] == "configs/embedded.yaml"
    assert {m["role"] for m in r["profile"]["models"]} >= {"llm", "stt", "tts", "embeddings"}
    assert all(r["scenarios"][n]["status"] == "ok" for n in GROUPS[group])
    assert r["profile_matches_endpoint"] is True
    m = r["machine"]
    for key in ("cpu_model", "cpu_cores_logical", "ram_gib", "os", "python"):
        assert m[key], key
    assert m["versions"]["torch"] and m["versions"]["ray"]


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_reports_percentiles(smoke, name):
    result = smoke(_group(name))["report"]["scenarios"][name]
    assert result["status"] == "ok", result.get("error")
    phases = {"sequential": result["endpoint"]["sequential"], **result["endpoint"]["load"]}
    assert result["endpoint"]["load"]
    for phase_name, phase in phases.items():
        assert phase["ok"] > 0, (phase_name, phase["error_messages"])
        assert _numeric(phase["requests_per_s"]) and _numeric(phase["error_rate"])
        for metric in result["metrics"]:
            assert _percentiles_ok(phase["metrics"][metric]), (phase_name, metric, phase["metrics"][metric])
        for rate in result["rates"]:
            assert _numeric(phase[rate]), (phase_name, rate)
    assert result["baseline"]["status"] == "ok", result["baseline"]
    # the bare baseline measures what the overhead ratio compares (some endpoint metrics, such
    # as realtime's late_chunks or admission's wait_s, have no bare counterpart)
    compared = result["overhead"]["ratios"]
    assert result["headline"] in compared
    for metric in compared:
        assert _percentiles_ok(result["baseline"]["sequential"]["metrics"][metric]), metric
    summary = result["summary"]["phases"]
    assert summary.keys() == result["endpoint"]["load"].keys()


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_reports_overhead_ratio(smoke, name):
    overhead = smoke(_group(name))["report"]["scenarios"][name]["overhead"]
    assert _numeric(overhead["ratio"]) and overhead["ratio"] > 0
    assert overhead["metric"] in overhead["ratios"]
    assert all(_numeric(v) and v > 0 for v in overhead["ratios"].values())
    assert overhead["by_input"] and overhead["definition"]


def test_chart_is_a_png(smoke):
    run = smoke("rest")
    path = run["out"] / "chart.png"
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    assert width > 100 and height > 100
    assert data[-8:-4] == b"IEND"
    assert run["report"]["files"]["chart"] == str(path)


def test_planned_and_unknown_scenarios_are_refused():
    from benchmarks.scenarios import PLANNED

    cases = [(n, "not implemented yet") for n in PLANNED if n not in SCENARIOS] + [("nope", "unknown scenario")]
    for name, words in cases:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks", "run", "--base-url", "http://127.0.0.1:9", "--scenarios", name],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2 and words in proc.stderr, proc.stderr


def test_percentiles_interpolate_linearly():
    from benchmarks.stats import percentile, summarize

    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([float(i) for i in range(101)], 99) == 99.0
    assert percentile([7.0], 95) == 7.0
    s = summarize([3, 1, 2])
    assert (s["n"], s["min"], s["max"], s["p50"]) == (3, 1, 3, 2)
    assert summarize([]) is None


def test_compare_pairs_two_endpoints(omni, tmp_path):
    """``python -m benchmarks compare`` (what ``benchmarks/metrics_overhead.sh`` runs), here with
    the session's application as both A and B: every pair answered, and the report carries the
    ratios it defines (their values are not checked: that is a measurement)."""
    cmd = [sys.executable, "-m", "benchmarks", "compare", "--a", omni["base_url"], "--b", f"{omni['base_url']}/v1"]
    cmd += ["--scenarios", "embeddings", "--repeats", "2", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S)
    assert proc.returncode == 0, f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    report = json.loads((tmp_path / "compare.json").read_text())
    assert report["schema"] == "omniserve-benchmark-compare/1" and report["repeats"] == 2
    assert report["a"]["base_url"] == report["b"]["base_url"] == omni["base_url"]  # a trailing /v1 is accepted
    block = report["scenarios"]["embeddings"]
    assert block["pairs"] == 2 * len(block["by_input"]) == 6 and block["failed_pairs"] == 0
    assert _numeric(block["ratio"]) and block["ratio"] > 0 and _numeric(block["pair_ratio"])
    for by_metric in block["by_input"].values():
        latency = by_metric["latency_ms"]
        assert _percentiles_ok(latency["a"]) and _percentiles_ok(latency["b"]) and _numeric(latency["p50_ratio"])
        assert latency["a"]["n"] == latency["b"]["n"] == 2
        q = latency["pair_ratios"]
        assert q["p25"] <= q["p50"] <= q["p75"]
