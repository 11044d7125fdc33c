"""When to try a failed KMS call again: exponential backoff with full jitter, within a deadline. Pure: the caller
passes the clock and the random source.

Full jitter (a uniform delay between 0 and the exponential ceiling) spreads the retries of many requests that
were throttled at the same moment, instead of sending them back to KMS together.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    deadline_seconds: float  # for one key operation, every attempt and wait included
    base_delay_seconds: float
    max_delay_seconds: float

    def delay(self, failures: int, started: float, now: float, random: Callable[[], float]) -> float | None:
        """Seconds to wait after the `failures`-th failed attempt of an operation started at `started`; None when
        the wait would reach the deadline (an attempt must still have time left to run)."""
        ceiling = min(self.max_delay_seconds, self.base_delay_seconds * 2 ** (failures - 1))
        wait = ceiling * random()
        if now + wait >= started + self.deadline_seconds:
            return None
        return wait

    def remaining(self, started: float, now: float) -> float:
        return started + self.deadline_seconds - now
