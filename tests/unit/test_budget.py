"""The process-wide batch budget: never more leases than batches, waiters served in order, nothing leaked."""
from __future__ import annotations

import asyncio

from gateway.proxy.budget import BatchBudget


async def test_leases_never_exceed_the_budget_and_are_all_returned():
    budget = BatchBudget(3)
    held = peak = 0

    async def transfer(batches: int) -> None:
        nonlocal held, peak
        lease = budget.lease()
        try:
            for _ in range(batches):
                await lease.acquire()
                held += 1
                peak = max(peak, held)
                await asyncio.sleep(0.001)  # filled, sealed, written ...
                held -= 1
                lease.release()
        finally:
            lease.close()

    await asyncio.wait_for(asyncio.gather(*(transfer(5) for _ in range(8))), timeout=10)
    assert peak == 3
    # Everything came back: three fresh leases get a batch each at once.
    leases = [budget.lease() for _ in range(3)]
    await asyncio.wait_for(asyncio.gather(*(lease.acquire() for lease in leases)), timeout=1)


async def test_close_returns_what_a_failed_transfer_held():
    budget = BatchBudget(2)
    failed = budget.lease()
    await failed.acquire()
    await failed.acquire()
    waiting = asyncio.ensure_future(budget.lease().acquire())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    failed.close()
    await asyncio.wait_for(waiting, timeout=1)
    failed.close()  # idempotent
    failed.release()  # nothing held: no effect
