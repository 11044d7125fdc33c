"""Readiness: can this gateway serve right now? A KMS data-key round trip in some region and a reachable store.

The answer is cached briefly, so probes every few seconds from several kubelets cost at most one KMS round trip
and one upstream request per `cache_seconds`. Liveness never calls anything (a KMS outage must not restart pods).
"""
from __future__ import annotations

import asyncio
import logging
import time

from gateway import errors
from gateway.proxy.context import Gateway

log = logging.getLogger(__name__)

_PROBE_CONTEXT = {"envelope-gateway:probe": "readyz"}
_PROBE_PRINCIPAL = "readyz"


class Readiness:
    def __init__(self, gw: Gateway, cache_seconds: float = 10.0) -> None:
        self._gw = gw
        self._cache_seconds = cache_seconds
        self._checked_at = float("-inf")
        self._ok = False
        self._lock = asyncio.Lock()

    async def ready(self) -> bool:
        if not self._gw.ready:
            return False  # starting, or draining after SIGTERM
        async with self._lock:
            if time.monotonic() - self._checked_at >= self._cache_seconds:
                self._ok = await self._check()
                self._checked_at = time.monotonic()
            return self._ok

    async def _check(self) -> bool:
        try:
            # Either region will do: one region down must not take every pod out of service (docs/KEYS.md).
            if not await self._gw.keys.probe(_PROBE_CONTEXT, _PROBE_PRINCIPAL):
                return False
            # Any HTTP answer (403 for ListBuckets is fine) proves the store is reachable.
            response = await self._gw.upstream.request("GET", None, None)
            response.close()
            return response.status < 500
        except errors.S3Error as exc:
            log.warning("readiness check failed: %s", exc.code)
            return False
