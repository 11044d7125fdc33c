"""Percentiles and summaries of the benchmark harness (gateway/bench/stats.py)."""
from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.bench.stats import best, latency_summary, median, per_gib, percentile, ratio, throughput_mb_s


def test_percentile_interpolates_between_closest_ranks():
    values = [15, 20, 35, 40, 50]
    assert percentile(values, 0) == 15
    assert percentile(values, 100) == 50
    assert percentile(values, 50) == 35
    assert percentile(values, 40) == pytest.approx(29.0)   # rank 1.6: 20 + 0.6 * 15
    assert percentile(values, 90) == pytest.approx(46.0)   # rank 3.6: 40 + 0.6 * 10


def test_percentile_ignores_input_order_and_handles_tiny_inputs():
    assert percentile([3, 1, 2], 50) == 2
    assert percentile([7], 99) == 7
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile([1], 101)


@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=50), st.floats(0, 100))
def test_percentile_lies_within_the_data_and_is_monotonic(values, q):
    p = percentile(values, q)
    assert min(values) - 1e-6 <= p <= max(values) + 1e-6
    assert percentile(values, min(100, q + 1)) >= p - 1e-6


def test_percentile_agrees_with_a_sorted_rank_definition_on_random_data():
    rng = random.Random(5)
    values = [rng.expovariate(1) for _ in range(1001)]
    ordered = sorted(values)
    # With 1001 values, the 50th/90th/99th percentiles fall exactly on ranks 500/900/990.
    assert percentile(values, 50) == ordered[500]
    assert percentile(values, 90) == pytest.approx(ordered[900])
    assert percentile(values, 99) == pytest.approx(ordered[990])


def test_latency_summary_is_in_milliseconds():
    summary = latency_summary([0.001, 0.002, 0.003, 0.004])
    assert summary["p50_ms"] == pytest.approx(2.5)
    assert summary["max_ms"] == pytest.approx(4.0)
    assert summary["mean_ms"] == pytest.approx(2.5)
    assert summary["count"] == 4
    assert latency_summary([])["p50_ms"] is None


def test_rates_ratios_and_aggregates():
    assert throughput_mb_s(2_000_000, 2.0) == 1.0
    assert throughput_mb_s(1, 0) is None
    assert per_gib(3.0, 3 << 30) == 1.0
    assert per_gib(None, 1) is None and per_gib(1.0, 0) is None
    assert ratio(1.0, 2.0) == 0.5
    assert ratio(None, 2.0) is None and ratio(1.0, 0) is None
    assert best([1.0, None, 3.0]) == 3.0 and best([1.0, 3.0], lowest=True) == 1.0 and best([None]) is None
    assert median([None, 1.0, 5.0, 3.0]) == 3.0 and median([]) is None
    assert not math.isnan(median([1.0, 2.0]))
