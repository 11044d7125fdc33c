"""A circuit breaker for KMS: after `failure_threshold` consecutive failed calls (no answer, a timeout, a KMS
5xx), calls are refused at once for `open_seconds`, then one probe call is let through; its success closes the
breaker, its failure opens it again. Pure: the caller passes the clock.

Why: without it, every request waits out its whole retry deadline against a dead KMS, so a burst of requests
ties up every connection (and every client) for that long. With it, requests fail fast with 503 until the probe
finds KMS back. Answers from KMS that refuse (denied, disabled key, throttling) are not failures: KMS is up.
"""
from __future__ import annotations

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class Breaker:
    def __init__(self, failure_threshold: int, open_seconds: float) -> None:
        self.failure_threshold = failure_threshold
        self.open_seconds = open_seconds
        self.state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False

    def allow(self, now: float) -> bool:
        """May a call go to KMS now? In the half-open state only one call (the probe) is in flight at a time;
        its outcome must be reported (success, failure, or `abandon` if it never finished)."""
        if self.state == OPEN and now >= self._opened_at + self.open_seconds:
            self.state = HALF_OPEN
        if self.state == CLOSED:
            return True
        if self.state == HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def success(self) -> None:
        self.state, self._failures, self._probing = CLOSED, 0, False

    def failure(self, now: float) -> None:
        self._failures += 1
        if self.state == HALF_OPEN or self._failures >= self.failure_threshold:
            self.state, self._opened_at, self._probing = OPEN, now, False

    def abandon(self) -> None:
        """A call let through ended without a verdict (cancelled): the next caller may probe instead."""
        self._probing = False
