"""Idle timeouts for transfers: a side that stops moving bytes for too long is cut, a slow but moving one never.

A wait on a peer (the client's next body bytes, the client taking response bytes) is marked with `waiting()` /
`moved()`. A timer checks every quarter of the timeout whether the current wait has lasted the whole timeout
with no progress; only then does it call `on_idle` (once). Marking a wait is two attribute stores, the check is
one timer per transfer: no per-byte work and no timer per chunk. `progress` may also read a counter the event
loop moves by itself (bytes leaving a transport's write buffer), so progress inside one long write counts.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from gateway.observability.metrics import Metrics

log = logging.getLogger(__name__)


class ClientStalled(TimeoutError):
    """Set on a request body whose client stopped sending: wakes the reader, which answers RequestTimeout. A
    TimeoutError so that aiohttp, finding the body unread after the response, closes the connection instead of
    reading on (its lingering read treats a timeout as "give up")."""


class IdleWatch:
    def __init__(self, seconds: float, on_idle: Callable[[], None],
                 progress: Callable[[], int] | None = None) -> None:
        self._seconds = seconds
        self._tick = seconds / 4
        self._on_idle = on_idle
        self._progress = progress
        self._seen = progress() if progress is not None else 0
        self._loop = asyncio.get_running_loop()
        self._since: float | None = None  # the start of the current wait without progress; None: not waiting
        self.fired = False
        self._handle: asyncio.TimerHandle | None = self._loop.call_later(self._tick, self._check)

    def waiting(self) -> None:
        self._since = self._loop.time()

    def moved(self) -> None:
        self._since = None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        now = self._loop.time()
        if self._progress is not None:
            seen = self._progress()
            if seen != self._seen:
                self._seen = seen
                if self._since is not None:
                    self._since = now
        if self._since is not None and now - self._since >= self._seconds:
            self.fired = True
            self._handle = None
            self._on_idle()
            return
        self._handle = self._loop.call_later(self._tick, self._check)


def client_idle(metrics: Metrics, seconds: float, stalled: str, on_idle: Callable[[], None],
                progress: Callable[[], int] | None = None) -> IdleWatch:
    """A watch on a client that fires after `timeouts.client_idle_seconds`, counted and logged once."""
    def fire() -> None:
        metrics.transfer_timeouts.labels(stalled).inc()
        log.info("transfer cut: the client's %s made no progress for %ss", stalled, seconds)
        on_idle()
    return IdleWatch(seconds, fire, progress)
