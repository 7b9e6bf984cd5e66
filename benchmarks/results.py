"""Samples of one phase and their summary (the ``phase`` blocks of the report)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from benchmarks.scenario import Input, Scenario
from benchmarks.stats import summarize


def measure(scenario: Scenario, client: Any, inp: Input) -> dict:
    """One endpoint request as a sample: ``input`` (its key), ``ok``, ``elapsed_s`` (seconds,
    the whole call), ``error`` (a one-line message when not ok) and the scenario's metrics."""
    t0 = time.perf_counter()
    sample: dict[str, Any] = {"input": inp.key}
    try:
        sample.update(scenario.request(client, inp))
        sample["ok"] = True
    except Exception as exc:  # recorded as an error sample
        sample["ok"] = False
        sample["error"] = short_error(exc)
    sample["elapsed_s"] = time.perf_counter() - t0
    return sample


@dataclass
class PhaseResult:
    """Raw samples of one phase.

    Attributes:
        samples: one dict per request: ``input`` (its key), ``ok``, ``error`` (a short message
            when not ok) and the scenario's metric values.
        wall_s: seconds from the phase's first request to its last answer.
        users: concurrent users (1 for sequential phases and the baseline).
        duration_s: planned duration of a timed phase (``None`` for count-bound phases).
        extra: runner details (Locust's own counters, whether it was hard-stopped...).
    """

    samples: list[dict] = field(default_factory=list)
    wall_s: float = 0.0
    users: int = 1
    duration_s: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> int:
        return sum(1 for s in self.samples if s.get("ok"))

    def first_error(self) -> str | None:
        return next((s.get("error") for s in self.samples if not s.get("ok")), None)

    def report(self, scenario: Scenario) -> dict[str, Any]:
        """The phase block: counts, error rate, throughput, and p50/p95/p99 of every metric of
        ``scenario`` over the successful samples, pooled and by input."""
        ok = [s for s in self.samples if s.get("ok")]
        errors = len(self.samples) - len(ok)
        wall = self.wall_s if self.wall_s > 0 else None
        out: dict[str, Any] = {
            "users": self.users,
            "duration_s": self.duration_s,
            "wall_s": round(self.wall_s, 3),
            "requests": len(self.samples),
            "ok": len(ok),
            "errors": errors,
            "error_rate": round(errors / len(self.samples), 4) if self.samples else None,
            "error_messages": dict(
                Counter(s.get("error") or "?" for s in self.samples if not s.get("ok")).most_common(5)
            ),
            "requests_per_s": round(len(ok) / wall, 4) if wall else None,
        }
        for rate, key in scenario.rates.items():
            out[rate] = round(sum(float(s.get(key) or 0) for s in ok) / wall, 4) if wall else None
        out["metrics"] = metric_stats(ok, scenario.metrics)
        by_input: dict[str, Any] = {}
        for key in dict.fromkeys(s["input"] for s in self.samples):
            mine = [s for s in self.samples if s["input"] == key]
            good = [s for s in mine if s.get("ok")]
            by_input[key] = {
                "requests": len(mine),
                "errors": len(mine) - len(good),
                "metrics": metric_stats(good, scenario.metrics),
            }
        out["by_input"] = by_input
        out.update(self.extra)
        return out


def metric_stats(samples: list[dict], metrics: tuple[str, ...]) -> dict[str, dict | None]:
    """``{metric: summarize(values)}``; list-valued metrics (e.g. every inter-token gap of a
    request) are pooled over the samples."""
    out = {}
    for m in metrics:
        values: list[float] = []
        for s in samples:
            v = s.get(m)
            if isinstance(v, (list, tuple)):
                values.extend(v)
            elif v is not None:
                values.append(v)
        out[m] = summarize(values)
    return out


def short_error(exc: BaseException) -> str:
    """A one-line description of a failure: the exception type and the start of its message."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {line[:160]}" if line else type(exc).__name__
