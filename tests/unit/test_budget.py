"""The process-wide batch budget: never more bytes leased than the budget, waiters served in order, nothing
leaked, and batch sizes that shrink as transfers are added."""
from __future__ import annotations

import asyncio

import pytest

from gateway import errors
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
    assert budget.available_bytes == 3 * MiB  # everything came back


async def test_a_transfer_that_holds_batches_leaves_the_reserve_to_new_ones():
    budget = BatchBudget(24 * MiB, 4 * MiB)
    stalled = budget.lease()
    # Alone, it grows while batches leave the reserve (a quarter) free: 4 batches of 4 MiB, then it waits.
    for _ in range(4):
        assert await asyncio.wait_for(stalled.acquire(), timeout=1) == 4 * MiB
    more = asyncio.ensure_future(stalled.acquire())
    await asyncio.sleep(0.01)
    assert not more.done()
    # Its client stopped reading; new transfers still start, one batch each, out of the reserve.
    newcomers = [budget.lease() for _ in range(3)]
    for lease in newcomers:
        await asyncio.wait_for(lease.acquire(), timeout=1)
    # Stalled or not, the first one does not get more while others run (its share: 24 MiB / 4 transfers).
    await asyncio.sleep(0.01)
    assert not more.done()
    for lease in newcomers:
        lease.close()
    stalled.release()  # it moves again: its next batch fits once it is back under its share and the reserve
    await asyncio.wait_for(more, timeout=1)
    stalled.close()
    assert budget.available_bytes == 24 * MiB and budget.transfers == 0


async def test_a_new_transfer_waits_a_bounded_time_then_gets_slowdown():
    exhausted = []
    budget = BatchBudget(2 * MIN_BATCH_BYTES, MIN_BATCH_BYTES, wait_seconds=0.05,
                         on_exhausted=lambda: exhausted.append(1))
    holders = [budget.lease() for _ in range(2)]
    for lease in holders:
        await lease.acquire()  # each one's first batch: together the whole budget
    late = budget.lease()
    with pytest.raises(errors.SlowDown):
        await asyncio.wait_for(late.acquire(), timeout=5)
    late.close()
    assert exhausted == [1]
    for lease in holders:
        lease.close()
    assert budget.available_bytes == 2 * MIN_BATCH_BYTES and budget.transfers == 0


async def test_close_returns_what_a_failed_transfer_held_and_waiters_go_in_order():
    budget = BatchBudget(MIN_BATCH_BYTES * 2, MIN_BATCH_BYTES)
    failed = [budget.lease(), budget.lease()]
    for lease in failed:
        await lease.acquire()
    order: list[str] = []

    async def wait(name: str) -> None:
        lease = budget.lease()
        await lease.acquire()
        order.append(name)

    first, second = asyncio.ensure_future(wait("first")), asyncio.ensure_future(wait("second"))
    await asyncio.sleep(0.01)
    assert order == []
    for lease in failed:
        lease.close()
    await asyncio.wait_for(asyncio.gather(first, second), timeout=1)
    assert order == ["first", "second"]
    failed[0].close()  # idempotent
    failed[0].release()  # nothing held: no effect


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
    crowd = [budget.lease() for _ in range(70)]
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
