"""The process-wide memory budget for batches in flight, and the batch size it allows a new transfer.

Each transfer keeps a few batches in flight (being read, in the crypto pool, being written). Bounded per
transfer only, memory grows with the number of concurrent transfers although the pool cannot work on more than a
few batches at a time anyway: 16 concurrent transfers once held 250-380 MiB. A transfer takes a share of the
budget before it starts a batch and returns it once that batch's output has been written, so the bytes of all
batches alive in the process never exceed `crypto.buffer_budget_bytes` (each batch: its plaintext and its sealed
or opened copy). Waiters are served first come, first served.

Why the batch size follows the number of transfers: every batch costs the event loop a fixed amount (a hop to
the pool and back, queue hand-offs, one write), so big batches are much cheaper per byte — 4 MiB instead of
1 MiB measured +35 % PUT and +25 % GET throughput for a single 1 GiB transfer — but with many transfers they
would need a budget many times larger. A batch started while its transfer runs alone gets the largest size
(`crypto.batch_bytes`); one started beside many transfers a smaller one, down to MIN_BATCH_BYTES, so that each
keeps a few batches in flight.

The flip side of a shared budget: a client that stops reading keeps its share until its transfer ends or times
out, so the budget should stay well above one transfer's batches.
"""
from __future__ import annotations

import asyncio
from collections import deque

from gateway.format.sizes import SEGMENT_SIZE_BYTES

MIN_BATCH_BYTES = 4 * SEGMENT_SIZE_BYTES  # 256 KiB
# Batches a transfer has alive at most with a pipeline depth of 2: two read ahead, one in the pool, two results
# waiting, one being written. Used to size batches, not to enforce anything: the budget does that.
BATCHES_PER_TRANSFER = 6


class BatchBudget:
    def __init__(self, total_bytes: int, max_batch_bytes: int) -> None:
        if max_batch_bytes > total_bytes or max_batch_bytes < MIN_BATCH_BYTES:
            raise ValueError("the budget must hold at least one batch of the largest size")
        self.total_bytes = total_bytes
        self.max_batch_bytes = max_batch_bytes
        self._available = total_bytes
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self.transfers = 0

    def lease(self) -> Lease:
        self.transfers += 1
        return Lease(self)

    def batch_bytes(self) -> int:
        """The batch size for a batch starting now, from the number of transfers running."""
        share = self.total_bytes // (max(1, self.transfers) * BATCHES_PER_TRANSFER)
        return max(MIN_BATCH_BYTES, min(self.max_batch_bytes, share // SEGMENT_SIZE_BYTES * SEGMENT_SIZE_BYTES))

    async def _acquire(self, size: int) -> None:
        if not self._waiters and self._available >= size:
            self._available -= size
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((size, waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release(size)  # granted just as it was cancelled: give it back
            else:
                self._waiters.remove((size, waiter))
                self._wake()
            raise

    def _release(self, size: int) -> None:
        self._available += size
        self._wake()

    def _wake(self) -> None:
        # First come, first served: a large request at the head is not overtaken by smaller ones behind it.
        while self._waiters and self._available >= self._waiters[0][0]:
            size, waiter = self._waiters.popleft()
            self._available -= size
            waiter.set_result(None)


class Lease:
    """One transfer's share of the budget: acquire() before starting a batch — it returns the size that batch
    may have, chosen as it starts, so a transfer's batches shrink when others arrive and grow when they leave —
    release() once it is written, close() when the transfer ends however it ends."""

    def __init__(self, budget: BatchBudget) -> None:
        self._budget = budget
        self._held: deque[int] = deque()
        self._closed = False

    async def acquire(self) -> int:
        size = self._budget.batch_bytes()
        await self._budget._acquire(size)
        self._held.append(size)
        return size

    def release(self) -> None:
        if self._held:
            self._budget._release(self._held.popleft())

    def close(self) -> None:
        while self._held:
            self.release()
        if not self._closed:
            self._closed = True
            self._budget.transfers -= 1
