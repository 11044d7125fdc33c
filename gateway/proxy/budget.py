"""The process-wide memory budget for batches in flight.

Each transfer keeps a few batches in flight (reading, in the crypto pool, being written). Bounded per transfer
only, memory grows with the number of concurrent transfers although the pool cannot work on more than a few
batches at a time anyway: 16 concurrent transfers once held 250-380 MiB. A lease on the budget is taken before
a batch buffer is filled and returned when that batch's output has been written, so the batches alive in the
whole process never exceed `crypto.buffered_batches` (each: one plaintext buffer and one sealed or opened copy).
Transfers beyond the budget wait for a batch to be written elsewhere (FIFO), which only slows them down where
the CPU was the limit already. The flip side: a client that stops reading keeps its leases until the transfer
ends or times out, so the budget should stay well above `inflight_batches_per_request`.
"""
from __future__ import annotations

import asyncio


class BatchBudget:
    def __init__(self, batches: int) -> None:
        self.batches = batches
        self._semaphore = asyncio.Semaphore(batches)

    def lease(self) -> Lease:
        return Lease(self._semaphore)


class Lease:
    """One transfer's share of the budget: acquire() before filling a batch, release() once it is written,
    close() when the transfer ends however it ends."""

    def __init__(self, semaphore: asyncio.Semaphore) -> None:
        self._semaphore, self._held = semaphore, 0

    async def acquire(self) -> None:
        await self._semaphore.acquire()
        self._held += 1

    def release(self) -> None:
        if self._held:
            self._held -= 1
            self._semaphore.release()

    def close(self) -> None:
        while self._held:
            self.release()
