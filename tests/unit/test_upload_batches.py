"""Cutting a client body into segment-aligned batches, whatever the piece boundaries the network gives."""
from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.format.sizes import SEGMENT_SIZE_BYTES
from gateway.proxy.upload import _batches

BATCH = 2 * SEGMENT_SIZE_BYTES


class _FakeBody:
    def __init__(self, data: bytes, cuts: list[int]) -> None:
        self.data, self.length, self.received = data, len(data), 0
        self._cuts = sorted({c for c in cuts if 0 < c < len(data)})

    async def pieces(self):
        start = 0
        for end in [*self._cuts, len(self.data)]:
            self.received += end - start
            yield self.data[start:end]
            start = end


async def _collect(body: _FakeBody):
    return [(b"".join(b.pieces), b.first_index, b.final) async for b in _batches(body, BATCH)]


@settings(max_examples=300, deadline=None)
@given(size=st.integers(0, 3 * BATCH + 5), cuts=st.lists(st.integers(0, 3 * BATCH + 5), max_size=8))
def test_batches_are_whole_segments_and_only_the_last_is_final(size, cuts):
    data = bytes(i % 251 for i in range(size))
    batches = asyncio.run(asyncio.wait_for(_collect(_FakeBody(data, cuts)), timeout=10))
    assert b"".join(b for b, _, _ in batches) == data
    assert [final for _, _, final in batches] == [False] * (len(batches) - 1) + [True]
    for position, (chunk, first_index, final) in enumerate(batches):
        assert first_index == position * (BATCH // SEGMENT_SIZE_BYTES)
        if not final:
            assert len(chunk) == BATCH


def test_a_body_ending_exactly_on_a_batch_boundary_has_no_empty_final_batch():
    data = bytes(2 * BATCH)
    batches = asyncio.run(_collect(_FakeBody(data, [BATCH + 1])))
    assert [(len(b), final) for b, _, final in batches] == [(BATCH, False), (BATCH, True)]
