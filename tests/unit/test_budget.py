"""The process-wide batch budget: never more bytes leased than the budget, waiters served in order, nothing
leaked, and batch sizes that shrink as transfers are added."""
from __future__ import annotations

import asyncio

import pytest

from gateway.proxy.budget import BATCHES_PER_TRANSFER, MIN_BATCH_BYTES, BatchBudget

MiB = 1024 * 1024


async def test_leases_never_exceed_the_budget_and_are_all_returned():
    budget = BatchBudget(3 * MiB, MiB)
    held = peak = 0

    async def transfer(batches: int) -> None:
        nonlocal held, peak
        lease = budget.lease()
        try:
            for _ in range(batches):
                size = await lease.acquire()
                held += size
                peak = max(peak, held)
                await asyncio.sleep(0.001)  # filled, sealed, written ...
                held -= size
                lease.release()
        finally:
            lease.close()

    await asyncio.wait_for(asyncio.gather(*(transfer(5) for _ in range(8))), timeout=10)
    assert 0 < peak <= 3 * MiB
    assert budget.transfers == 0
    # Everything came back: a fresh lease gets the whole budget at once.
    lease = budget.lease()
    for _ in range(BATCHES_PER_TRANSFER):  # 3 MiB / 6 = 512 KiB each, all granted at once
        assert await asyncio.wait_for(lease.acquire(), timeout=1) == 512 * 1024
    lease.close()


async def test_close_returns_what_a_failed_transfer_held_and_waiters_go_in_order():
    budget = BatchBudget(MIN_BATCH_BYTES * 2, MIN_BATCH_BYTES)
    failed = budget.lease()
    await failed.acquire()
    await failed.acquire()
    order: list[str] = []

    async def wait(name: str) -> None:
        lease = budget.lease()
        await lease.acquire()
        order.append(name)

    first, second = asyncio.ensure_future(wait("first")), asyncio.ensure_future(wait("second"))
    await asyncio.sleep(0.01)
    assert order == []
    failed.close()
    await asyncio.wait_for(asyncio.gather(first, second), timeout=1)
    assert order == ["first", "second"]
    failed.close()  # idempotent
    failed.release()  # nothing held: no effect


async def test_a_cancelled_waiter_gives_its_place_back():
    budget = BatchBudget(MIN_BATCH_BYTES, MIN_BATCH_BYTES)
    holder = budget.lease()
    await holder.acquire()
    cancelled = asyncio.ensure_future(budget.lease().acquire())
    await asyncio.sleep(0.01)
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    holder.close()
    await asyncio.wait_for(budget.lease().acquire(), timeout=1)  # not stuck behind the cancelled one


async def test_batch_size_follows_the_number_of_transfers():
    budget = BatchBudget(24 * MiB, 4 * MiB)
    alone = budget.lease()
    assert budget.batch_bytes() == 4 * MiB  # 24 MiB / 6 batches
    second = budget.lease()
    assert await second.acquire() == 2 * MiB
    second.release()
    crowd = [budget.lease() for _ in range(20)]
    assert budget.batch_bytes() == MIN_BATCH_BYTES
    sizes = {budget.batch_bytes() for _ in crowd}
    assert all(size % (64 * 1024) == 0 for size in sizes)
    for lease in crowd:
        lease.close()
    assert await alone.acquire() == 2 * MiB  # two transfers left
    second.close()
    assert await alone.acquire() == 4 * MiB  # alone again: its next batch is the largest
    alone.close()
    assert budget.transfers == 0
    assert BATCHES_PER_TRANSFER * 4 * MiB == 24 * MiB


def test_the_budget_must_hold_one_batch():
    with pytest.raises(ValueError):
        BatchBudget(MiB, 2 * MiB)
