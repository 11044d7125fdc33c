"""Percentiles and per-phase summaries. Pure."""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

MB = 1_000_000
GiB = 1 << 30


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0 ≤ q ≤ 100) by linear interpolation between closest ranks (numpy's default);
    None for no values."""
    if not 0 <= q <= 100:
        raise ValueError("q must be within [0, 100]")
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    fraction = rank - low
    return float(ordered[low] + (ordered[high] - ordered[low]) * fraction)


def latency_summary(seconds: Iterable[float]) -> dict[str, float | None]:
    """p50/p90/p99/max/mean in milliseconds."""
    values = list(seconds)
    ms = [v * 1000 for v in values]
    return {"p50_ms": _round(percentile(ms, 50)), "p90_ms": _round(percentile(ms, 90)),
            "p99_ms": _round(percentile(ms, 99)), "max_ms": _round(max(ms) if ms else None),
            "mean_ms": _round(sum(ms) / len(ms) if ms else None), "count": len(ms)}


def throughput_mb_s(payload_bytes: int, wall_seconds: float) -> float | None:
    if wall_seconds <= 0:
        return None
    return payload_bytes / wall_seconds / MB


def per_gib(amount: float | None, payload_bytes: int) -> float | None:
    if amount is None or payload_bytes <= 0:
        return None
    return amount / (payload_bytes / GiB)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def best(values: Iterable[float | None], *, lowest: bool = False) -> float | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    return min(present) if lowest else max(present)


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return percentile(present, 50) if present else None


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)
