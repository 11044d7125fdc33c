"""The pure policies around KMS calls: retry backoff within a deadline (gateway.keys.retry), the circuit breaker
(gateway.keys.breaker). How KMS errors become S3 errors: test_kms_fault_map.py. No network."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.keys.breaker import CLOSED, HALF_OPEN, OPEN, Breaker
from gateway.keys.retry import RetryPolicy

POLICY = RetryPolicy(deadline_seconds=5, base_delay_seconds=0.05, max_delay_seconds=1)


# --- retry ------------------------------------------------------------------------------------------------------

def test_backoff_ceiling_doubles_up_to_the_maximum():
    ceilings = [POLICY.delay(n, started=0, now=0, random=lambda: 1.0 - 1e-12) for n in range(1, 8)]
    assert ceilings == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_full_jitter_can_retry_at_once():
    assert POLICY.delay(3, started=0, now=0, random=lambda: 0.0) == 0.0


def test_no_retry_without_time_for_an_attempt_before_the_deadline():
    assert POLICY.delay(6, started=0, now=4.0, random=lambda: 0.5) == 0.5
    assert POLICY.delay(6, started=0, now=4.3, random=lambda: 0.5) == 0.5  # 0.2 s left for the attempt
    assert POLICY.delay(6, started=0, now=4.31, random=lambda: 0.5) is None
    assert POLICY.delay(1, started=0, now=4.81, random=lambda: 0.0) is None


@given(st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=200),
       st.lists(st.floats(0, 0.5), min_size=200, max_size=200))
def test_attempts_and_waits_never_pass_the_deadline(randoms, attempt_seconds):
    now, failures = 0.0, 0
    for r, took in zip(randoms, attempt_seconds):
        now += min(took, POLICY.remaining(0, now))  # an attempt is cut off at the deadline
        failures += 1
        wait = POLICY.delay(failures, 0, now, lambda: r)
        if wait is None:
            break
        assert 0 <= wait <= POLICY.max_delay_seconds
        now += wait
        assert POLICY.remaining(0, now) >= POLICY.min_attempt_seconds
    assert now <= POLICY.deadline_seconds


# --- breaker ----------------------------------------------------------------------------------------------------

def test_breaker_opens_after_consecutive_failures_only():
    breaker = Breaker(failure_threshold=3, open_seconds=10)
    for _ in range(2):
        assert breaker.allow(0)
        breaker.failure(0)
    breaker.success()  # KMS answered: the count starts again
    for _ in range(2):
        breaker.failure(0)
    assert breaker.state == CLOSED and breaker.allow(0)
    breaker.failure(1)
    assert breaker.state == OPEN
    assert not breaker.allow(1) and not breaker.allow(10.999)


def test_half_open_lets_one_probe_through_and_its_outcome_decides():
    breaker = Breaker(failure_threshold=1, open_seconds=10)
    breaker.failure(0)
    assert breaker.allow(10) and breaker.state == HALF_OPEN
    assert not breaker.allow(10), "one probe at a time"
    breaker.failure(10)
    assert breaker.state == OPEN and not breaker.allow(19.9)
    assert breaker.allow(20)
    breaker.success()
    assert breaker.state == CLOSED and breaker.allow(20) and breaker.allow(20)


def test_an_abandoned_probe_lets_the_next_caller_probe():
    breaker = Breaker(failure_threshold=1, open_seconds=1)
    breaker.failure(0)
    assert breaker.allow(1)
    breaker.abandon()
    assert breaker.state == HALF_OPEN and breaker.allow(1)


