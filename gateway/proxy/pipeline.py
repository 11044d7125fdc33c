"""A three-stage streaming pipeline: produce (network in) → work (crypto pool) → consume (network out).

Each stage runs concurrently, joined by bounded queues, so reading the next batch, sealing/opening this one and
sending the previous one overlap, and a slow consumer stops the producer (backpressure) instead of growing
memory. Work items are processed strictly in order, one at a time per transfer: incremental checksums need the
bytes in order, and the pool is shared by all transfers anyway, so ordering costs no parallelism that exists.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from gateway.proxy.pool import CryptoPool

T = TypeVar("T")
R = TypeVar("R")

_END = object()


async def _fill(source: AsyncIterator[Any], queue: asyncio.Queue) -> None:
    try:
        async for item in source:
            await queue.put((item, None))
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
        await queue.put((None, exc))
    else:
        await queue.put((_END, None))


async def _drain(queue: asyncio.Queue) -> AsyncIterator[Any]:
    while True:
        item, exc = await queue.get()
        if exc is not None:
            raise exc
        if item is _END:
            return
        yield item


async def prefetch(source: AsyncIterator[T], depth: int) -> AsyncIterator[T]:
    """Run `source` in its own task, at most `depth` items ahead of the consumer."""
    queue: asyncio.Queue = asyncio.Queue(maxsize=depth)
    task = asyncio.create_task(_fill(source, queue))
    try:
        async for item in _drain(queue):
            yield item
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await _aclose(source)


async def ordered_work(source: AsyncIterator[T], work: Callable[[T], R], pool: CryptoPool,
                       depth: int) -> AsyncIterator[R]:
    """`work(item)` for every item, in the pool, in order; results at most `depth` ahead of the consumer."""

    async def results() -> AsyncIterator[R]:
        async for item in prefetch(source, depth):
            yield await pool.run(work, item)

    async for result in prefetch(results(), depth):
        yield result


async def _aclose(iterator: AsyncIterator[Any]) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        try:
            await close()
        except RuntimeError:
            pass  # already running in its (cancelled) task; nothing left to close
