"""read_upto: a small upstream body read whole, however the network cut it (StreamReader.read(n) returns only
what is buffered: one call is not the body — a part table split over two TCP segments was once refused)."""
from __future__ import annotations

import asyncio
from unittest import mock

import aiohttp

from gateway.proxy.responses import read_upto


def _response(loop: asyncio.AbstractEventLoop) -> tuple[mock.Mock, aiohttp.StreamReader]:
    reader = aiohttp.StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=loop)
    return mock.Mock(content=reader), reader


async def test_reads_every_piece_until_the_end():
    response, reader = _response(asyncio.get_running_loop())
    reader.feed_data(b"abc")

    async def later() -> None:
        await asyncio.sleep(0.01)
        reader.feed_data(b"def")
        await asyncio.sleep(0.01)
        reader.feed_data(b"ghi")
        reader.feed_eof()

    task = asyncio.create_task(later())
    assert await read_upto(response, 100) == b"abcdefghi"
    await task


async def test_stops_at_the_limit():
    response, reader = _response(asyncio.get_running_loop())
    reader.feed_data(b"0123456789")
    reader.feed_eof()
    assert await read_upto(response, 4) == b"0123"


async def test_empty_body():
    response, reader = _response(asyncio.get_running_loop())
    reader.feed_eof()
    assert await read_upto(response, 10) == b""
