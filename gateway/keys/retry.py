"""When to try a failed KMS call again: exponential backoff with full jitter, within a deadline. Pure: the caller
passes the clock and the random source.

Full jitter (a uniform delay between 0 and the exponential ceiling) spreads the retries of many requests that
were throttled at the same moment, instead of sending them back to KMS together.

A retry starts only with `min_attempt_seconds` left before the deadline: an attempt with less would mostly be
cut off by our own deadline, and look like KMS not answering (to the metrics and the circuit breaker).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    deadline_seconds: float  # for one key operation, every attempt and wait included
    base_delay_seconds: float
    max_delay_seconds: float
    min_attempt_seconds: float = 0.2  # KMS answers in tens of milliseconds when it is well

    def delay(self, failures: int, started: float, now: float, random: Callable[[], float]) -> float | None:
        """Seconds to wait after the `failures`-th failed attempt of an operation started at `started`; None when
        the attempt after the wait would not have `min_attempt_seconds` before the deadline."""
        ceiling = min(self.max_delay_seconds, self.base_delay_seconds * 2 ** (failures - 1))
        wait = ceiling * random()
        if now + wait + self.min_attempt_seconds > started + self.deadline_seconds:
            return None
        return wait

    def remaining(self, started: float, now: float) -> float:
        return started + self.deadline_seconds - now
