"""Summary statistics of measured samples.

Percentiles use linear interpolation between closest ranks (numpy's default, Hyndman & Fan
type 7): for ``n`` sorted values ``x[0..n-1]`` the ``p``-th percentile is read at rank
``h = (n - 1) * p / 100`` and interpolated between ``x[floor(h)]`` and ``x[ceil(h)]``. With few
samples p95 and p99 therefore lie close to the maximum.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

#: Percentiles every stats block carries.
PERCENTILES = (50, 95, 99)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) of an already sorted, non-empty sequence (type 7)."""
    if not sorted_values:
        raise ValueError("percentile of an empty sequence")
    h = (len(sorted_values) - 1) * p / 100.0
    lo, hi = math.floor(h), math.ceil(h)
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (h - lo))


def summarize(values: Iterable[float], digits: int = 4) -> dict | None:
    """``{"n", "mean", "min", "max", "p50", "p95", "p99"}`` of ``values`` (same unit as the
    values), rounded to ``digits`` significant digits; ``None`` when there are no values."""
    xs = sorted(float(v) for v in values if v is not None and math.isfinite(float(v)))
    if not xs:
        return None
    out = {
        "n": len(xs),
        "mean": _round(sum(xs) / len(xs), digits),
        "min": _round(xs[0], digits),
        "max": _round(xs[-1], digits),
    }
    for p in PERCENTILES:
        out[f"p{p}"] = _round(percentile(xs, p), digits)
    return out


def geometric_mean(values: Iterable[float]) -> float | None:
    """Geometric mean of the positive finite values, or ``None`` when there are none."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v)) and float(v) > 0]
    if not xs:
        return None
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def ratio(numerator: dict | None, denominator: dict | None, key: str = "p50", digits: int = 4) -> float | None:
    """``numerator[key] / denominator[key]`` of two stats blocks, or ``None`` when either is missing."""
    if not numerator or not denominator:
        return None
    a, b = numerator.get(key), denominator.get(key)
    if a is None or not b:
        return None
    return _round(a / b, digits)


def _round(x: float, digits: int) -> float:
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, max(0, digits - 1 - int(math.floor(math.log10(abs(x))))))
