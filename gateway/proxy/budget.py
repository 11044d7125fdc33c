"""The process-wide memory budget for batches in flight, and the batch size it allows a new transfer.

Each transfer keeps a few batches in flight (being read, in the crypto pool, being written). Bounded per
transfer only, memory grows with the number of concurrent transfers although the pool cannot work on more than a
few batches at a time anyway: 16 concurrent transfers once held 250-380 MiB. A transfer takes a share of the
budget before it starts a batch and returns it once that batch's output has been written (or the transfer ended
and its pipeline was torn down), so the bytes of all batches alive in the process never exceed
`crypto.buffer_budget_bytes` (each batch: its plaintext and its sealed or opened copy).

Why the batch size follows the number of transfers: every batch costs the event loop a fixed amount (a hop to
the pool and back, queue hand-offs, one write), so big batches are much cheaper per byte — 4 MiB instead of
1 MiB measured +35 % PUT and +25 % GET throughput for a single 1 GiB transfer — but with many transfers they
would need a budget many times larger. A batch started while its transfer runs alone gets the largest size
(`crypto.batch_bytes`); one started beside many transfers a smaller one, down to MIN_BATCH_BYTES.

Fair shares. A transfer whose client (or store) stops moving keeps the batches it holds until the idle timeout
cuts it (gateway.proxy.idle); meanwhile it must not starve the others:
- A transfer that holds no batch may use the whole budget; one that already holds batches only what is left
  above a reserve (a quarter of the budget), and only up to its fair share (the budget / transfers running).
  So a new transfer's first batch — and every batch of a transfer that moves one batch at a time — finds room
  although stalled transfers hold everything else: they cannot grow into the reserve.
- A transfer that holds nothing and still finds no room (the reserve is gone too: many stalled transfers) waits
  at most `wait_seconds`, then gets SlowDown (503, retried by SDKs): a bounded wait, never a hang.
Waiters are woken in arrival order among those whose share is free.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable

from gateway import errors
from gateway.format.sizes import SEGMENT_SIZE_BYTES

# One segment: beside many transfers, a batch as small as the format allows keeps the reserve able to start many.
MIN_BATCH_BYTES = SEGMENT_SIZE_BYTES
# Batches a transfer has alive at most with a pipeline depth of 2: two read ahead, one in the pool, two results
# waiting, one being written. Used to size batches, not to enforce anything: the budget does that.
BATCHES_PER_TRANSFER = 6


class BatchBudget:
    def __init__(self, total_bytes: int, max_batch_bytes: int, wait_seconds: float = 5.0,
                 on_exhausted: Callable[[], None] | None = None) -> None:
        if max_batch_bytes > total_bytes or max_batch_bytes < MIN_BATCH_BYTES:
            raise ValueError("the budget must hold at least one batch of the largest size")
        self.total_bytes = total_bytes
        self.max_batch_bytes = max_batch_bytes
        self.reserve_bytes = total_bytes // 4
        self.wait_seconds = wait_seconds
        self._on_exhausted = on_exhausted
        self._available = total_bytes
        self._waiters: list[tuple[Lease, int, asyncio.Future[None]]] = []
        self.transfers = 0

    @property
    def available_bytes(self) -> int:
        return self._available

    def lease(self) -> Lease:
        self.transfers += 1
        return Lease(self)

    def batch_bytes(self) -> int:
        """The batch size for a batch starting now, from the number of transfers running."""
        share = self.total_bytes // (max(1, self.transfers) * BATCHES_PER_TRANSFER)
        return max(MIN_BATCH_BYTES, min(self.max_batch_bytes, share // SEGMENT_SIZE_BYTES * SEGMENT_SIZE_BYTES))

    def _fits(self, lease: Lease, size: int) -> bool:
        if lease.held_bytes == 0:
            return self._available >= size
        fair_share = self.total_bytes // max(1, self.transfers)
        return self._available - size >= self.reserve_bytes and lease.held_bytes + size <= fair_share

    async def _acquire(self, lease: Lease, size: int) -> None:
        if self._fits(lease, size):  # no queueing behind waiters that wait for room this one does not need
            self._available -= size
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (lease, size, waiter)
        self._waiters.append(entry)
        try:
            if lease.held_bytes:
                await waiter  # its own batches, once written, make room (or it holds none and is bounded below)
            else:
                await asyncio.wait_for(asyncio.shield(waiter), self.wait_seconds)
        except (asyncio.CancelledError, TimeoutError) as exc:
            if waiter.done() and not waiter.cancelled():
                self._release(size)  # granted just as it was cancelled: give it back
            else:
                waiter.cancel()
                self._waiters.remove(entry)
                self._wake()
            if isinstance(exc, TimeoutError):
                if self._on_exhausted is not None:
                    self._on_exhausted()
                raise errors.SlowDown("The gateway's transfer memory is exhausted; retry.") from None
            raise

    def _release(self, size: int) -> None:
        self._available += size
        self._wake()

    def _wake(self) -> None:
        for entry in list(self._waiters):
            lease, size, waiter = entry
            if waiter.done():
                continue
            if self._fits(lease, size):
                self._waiters.remove(entry)
                self._available -= size
                waiter.set_result(None)


class Lease:
    """One transfer's share of the budget: acquire() before starting a batch — it returns the size that batch
    may have, chosen as it starts, so a transfer's batches shrink when others arrive and grow when they leave —
    release() once it is written, close() when the transfer ends however it ends (after its pipeline is torn
    down: the bytes of batches still alive are counted until then)."""

    def __init__(self, budget: BatchBudget) -> None:
        self._budget = budget
        self._held: list[int] = []
        self.held_bytes = 0
        self._closed = False

    async def acquire(self) -> int:
        size = self._budget.batch_bytes()
        await self._budget._acquire(self, size)
        self._held.append(size)
        self.held_bytes += size
        return size

    def release(self) -> None:
        if self._held:
            size = self._held.pop(0)
            self.held_bytes -= size
            self._budget._release(size)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._budget.transfers -= 1
        while self._held:
            self.release()
