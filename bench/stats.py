"""Pure statistics used by the benchmark and its report (no I/O, no services)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

PERCENTILES = (50.0, 95.0, 99.0)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks.

    Same definition as numpy's default ("linear"): p0 is the minimum, p100 the maximum. Raises
    ValueError on an empty sequence or a q outside [0, 100].
    """
    if not values:
        raise ValueError("percentile of an empty sequence")
    if not 0.0 <= q <= 100.0 or math.isnan(q):
        raise ValueError(f"q must be between 0 and 100, got {q}")
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    fraction = position - low
    return float(ordered[low] + (ordered[high] - ordered[low]) * fraction)


def summarize(values: Iterable[float]) -> dict[str, Any]:
    """Count, mean, min, p50, p95, p99 and max of some samples; None figures when empty."""
    data = [float(v) for v in values]
    if not data:
        return dict.fromkeys(("mean", "min", "p50", "p95", "p99", "max"), None) | {"count": 0}
    summary: dict[str, Any] = {
        "count": len(data),
        "mean": sum(data) / len(data),
        "min": min(data),
        "max": max(data),
    }
    for q in PERCENTILES:
        summary[f"p{q:g}"] = percentile(data, q)
    return summary


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is not > 0."""
    if numerator is None or denominator is None:
        return None
    if not denominator > 0 or math.isnan(numerator):
        return None
    return numerator / denominator


def rate(count: float, seconds: float | None) -> float | None:
    """Events per second, or None over an empty or unknown interval."""
    if seconds is None or not seconds > 0:
        return None
    return count / seconds


def steady_rate(completions: Iterable[tuple[float, int]], start: float, end: float) -> float | None:
    """Units per second completed inside [start, end]: (time, units) pairs outside are ignored."""
    if not end > start:
        return None
    done = sum(units for at, units in completions if start <= at <= end)
    return done / (end - start)
