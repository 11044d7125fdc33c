"""A three-stage streaming pipeline: produce (network in) → work (crypto pool) → consume (network out).

One task reads the source and hands each item to the pool as soon as the previous item's work is done; the
consumer awaits the results in order through a bounded queue. So reading the next batch, sealing/opening this
one and sending the previous one overlap, and a slow consumer stops the producer (backpressure) instead of
growing memory. Work items of one transfer run strictly in order, one at a time: incremental checksums need the
bytes in order, and the pool is shared by all transfers anyway, so ordering costs no parallelism that exists.
Per item that is one queue hand-off and one pool round trip on the event loop — the per-batch cost that small
batches (many concurrent transfers) multiply.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from gateway.proxy.pool import CryptoPool

T = TypeVar("T")
R = TypeVar("R")

_END = object()


async def _produce(source: AsyncIterator[T], work: Callable[[T], R], pool: CryptoPool,
                   queue: asyncio.Queue) -> None:
    previous: asyncio.Future | None = None
    item: T | None = None
    try:
        async for item in source:
            if previous is not None:
                # Reading this item overlapped the previous one's work; its work starts only once that is done.
                await asyncio.wait([previous])
                if previous.exception() is not None:
                    return  # the consumer raises it; nothing after a failed item is worked on
            previous = asyncio.ensure_future(pool.run(work, item))
            await queue.put(previous)
    except asyncio.CancelledError:
        if previous is not None and not previous.done():
            previous.cancel()  # cancelled before the queue took it: nobody else would stop it
        raise
    except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
        failed: asyncio.Future = asyncio.get_running_loop().create_future()
        failed.set_exception(exc)
        await queue.put(failed)
        del failed  # the exception's traceback holds this frame: no cycle through the future
        return
    finally:
        # This frame outlives the task in tracebacks; a batch (megabytes) must not live on with it.
        item = previous = None
    await queue.put(_END)


async def ordered_work(source: AsyncIterator[T], work: Callable[[T], R], pool: CryptoPool,
                       depth: int) -> AsyncIterator[R]:
    """`work(item)` for every item, in the pool, in order; results at most `depth` ahead of the consumer."""
    queue: asyncio.Queue = asyncio.Queue(maxsize=depth)
    producer = asyncio.create_task(_produce(source, work, pool, queue))
    try:
        while True:
            future = await queue.get()
            if future is _END:
                return
            yield await future
    finally:
        producer.cancel()
        await asyncio.gather(producer, return_exceptions=True)
        while not queue.empty():  # results nobody will take: stop them, or retrieve their exceptions
            future = queue.get_nowait()
            if future is _END:
                continue
            if future.done():
                if not future.cancelled():
                    future.exception()
            else:
                future.cancel()
        await aclose_quietly(source)


async def aclose_quietly(iterator: AsyncIterator[Any]) -> None:
    """Close an async generator now (its finally blocks run here, not when the garbage collector finds it)."""
    close = getattr(iterator, "aclose", None)
    if close is not None:
        try:
            await close()
        except RuntimeError:
            pass  # already running in its (cancelled) task; nothing left to close
