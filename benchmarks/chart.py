"""The report's PNG chart (matplotlib, Agg backend): one row per scenario.

Left: the headline metric by input (bars: p50; line: up to p99; dot: p95) for the bare library,
the endpoint at concurrency 1 and the endpoint under load. Right: the overhead ratios
(endpoint ÷ bare, p50 at concurrency 1) by input and metric, with the line at 1 (no overhead).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLORS = {"bare": "#7f7f7f", "endpoint c=1": "#1f77b4", "endpoint load": "#d62728"}


def render(report: dict[str, Any], path: Path) -> Path:
    """Draw ``report`` into the PNG file ``path`` and return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["scenarios"].values() if r.get("status") == "ok"]
    fig, axes = plt.subplots(max(1, len(rows)), 2, figsize=(13, 3.3 * max(1, len(rows)) + 0.9), squeeze=False)
    for (left, right), result in zip(axes, rows, strict=False):
        _latency_panel(left, result)
        _ratio_panel(right, result)
    if not rows:
        for ax in axes[0]:
            ax.axis("off")
        axes[0][0].text(0.5, 0.5, "no scenario completed", ha="center", va="center")
    m = report.get("machine", {})
    s = report.get("settings", {})
    fig.suptitle(
        f"omniserve benchmark — {s.get('base_url')}, concurrency {s.get('concurrency')}, "
        f"{s.get('duration_s')} s per scenario{' (smoke)' if s.get('smoke') else ''}\n"
        f"{m.get('cpu_model')}, {m.get('cpu_cores_logical')} cores, {m.get('ram_gib')} GiB, "
        f"profile {report.get('profile', {}).get('path') if report.get('profile') else 'none'}",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _series(result: dict) -> dict[str, dict[str, dict | None]]:
    """``{series: {input: stats of the headline metric}}``."""
    metric = result["headline"]
    out: dict[str, dict[str, dict | None]] = {"bare": {}, "endpoint c=1": {}, "endpoint load": {}}
    seq = result["endpoint"]["sequential"]["by_input"]
    base = (result.get("baseline") or {}).get("sequential", {}).get("by_input", {})
    for key in seq:
        out["endpoint c=1"][key] = seq[key]["metrics"].get(metric)
        out["bare"][key] = (base.get(key) or {}).get("metrics", {}).get(metric)
        for phase in result["endpoint"]["load"].values():
            if key in phase["by_input"]:
                out["endpoint load"][key] = phase["by_input"][key]["metrics"].get(metric)
    return out


def _latency_panel(ax, result: dict) -> None:
    series = _series(result)
    keys = list(series["endpoint c=1"])
    width = 0.8 / len(series)
    values = []
    for j, (label, by_input) in enumerate(series.items()):
        xs, p50, up, p95 = [], [], [], []
        for i, key in enumerate(keys):
            st = by_input.get(key)
            if not st:
                continue
            xs.append(i + (j - 1) * width)
            p50.append(st["p50"])
            up.append(st["p99"] - st["p50"])
            p95.append(st["p95"])
            values += [st["p50"], st["p99"]]
        if xs:
            ax.bar(xs, p50, width, label=label, color=COLORS[label])
            ax.errorbar(xs, p50, yerr=[[0] * len(xs), up], fmt="none", ecolor="black", capsize=3, lw=1)
            ax.plot(xs, p95, "k.", ms=4)
    ax.set_xticks(range(len(keys)), keys, fontsize=8)
    ax.set_ylabel(result["headline"].replace("_", " "))
    ax.set_title(f"{result['title']}: {result['headline']} p50 (bar) / p95 (dot) / p99 (line)", fontsize=9)
    positive = [v for v in values if v and v > 0]
    if positive and max(positive) / min(positive) > 30:
        ax.set_yscale("log")
    ax.legend(fontsize=7)


def _ratio_panel(ax, result: dict) -> None:
    overhead = result.get("overhead") or {}
    by_input = overhead.get("by_input") or {}
    if overhead.get("ratio") is None or not by_input:
        ax.axis("off")
        ax.text(
            0.5,
            0.5,
            f"no overhead ratio: {overhead.get('reason', 'no baseline')}",
            ha="center",
            va="center",
            fontsize=8,
            wrap=True,
        )
        return
    keys = list(by_input)
    metrics = list(next(iter(by_input.values())))
    width = 0.8 / max(1, len(metrics))
    for j, metric in enumerate(metrics):
        xs = [i + (j - (len(metrics) - 1) / 2) * width for i in range(len(keys))]
        ys = [by_input[k].get(metric) or 0 for k in keys]
        ax.bar(xs, ys, width, label=metric)
    ax.axhline(1.0, color="black", lw=0.8, ls="--")
    ax.set_xticks(range(len(keys)), keys, fontsize=8)
    ax.set_ylabel("endpoint ÷ bare (p50, c=1)")
    ax.set_title(f"{result['title']}: overhead ratio {overhead['ratio']:.2f} ({overhead['metric']})", fontsize=9)
    ax.legend(fontsize=7)
