"""The bounded crypto thread pool.

AES-GCM (cryptography >= 50), hashlib and awscrt's CRCs release the GIL on large buffers, so a small pool of
threads really runs beside the event loop. One hop carries a whole batch (about 1 MiB) of segments: a hop costs
tens of microseconds of loop work, so hopping per 64 KiB segment would cap throughput far below the cipher.
The pool is sized to the CPU quota, not to the node, and is shared by all requests; each request keeps at most
a fixed number of batches in flight, so memory is a function of concurrency, never of object size.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from gateway.observability.metrics import Metrics

T = TypeVar("T")


class CryptoPool:
    def __init__(self, workers: int, metrics: Metrics) -> None:
        self.workers = workers
        self._metrics = metrics
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="crypto")

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        self._metrics.pool_queue_depth.inc()
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._job, fn, args)

    def _job(self, fn: Callable[..., T], args: tuple[object, ...]) -> T:
        # Gauges are thread-safe; the two moves are one hop's bookkeeping, not per segment.
        self._metrics.pool_queue_depth.dec()
        self._metrics.pool_busy_workers.inc()
        try:
            return fn(*args)
        finally:
            self._metrics.pool_busy_workers.dec()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
