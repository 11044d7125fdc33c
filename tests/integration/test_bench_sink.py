"""The benchmark sink and baseline proxy over real sockets, driven by the load client (all in this process)."""
from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from gateway.bench import baseline
from gateway.bench.client import S3Client
from gateway.bench.datagen import PATTERN_BYTES, PatternData
from gateway.bench.sink import Sink, serve
from gateway.devstore import free_port
from gateway.s3.sigv4 import Credentials

CREDENTIALS = Credentials("AKIDEXAMPLE", "secret")


@pytest.fixture
async def sink(tmp_path):
    port = free_port()
    store = Sink(str(tmp_path), memory_budget_bytes=8 * PATTERN_BYTES)
    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.create_task(serve(store, port, stop, ready.set))
    await asyncio.wait_for(ready.wait(), 10)
    yield store, f"http://127.0.0.1:{port}"
    stop.set()
    await asyncio.wait_for(task, 10)


def _client(url: str, **kwargs) -> S3Client:
    return S3Client(url, CREDENTIALS, "us-east-1", connections=4, **kwargs)


async def test_put_get_range_delete(sink):
    store, url = sink
    client = _client(url)
    data = PatternData(1, 2 * PATTERN_BYTES + 5)
    put = await client.put("b", "dir/key one", data)
    assert put.ok and put.etag
    got = await client.get("b", "dir/key one", data.size, put.digest)
    assert got.ok, got
    part = await client.get("b", "dir/key one", 1001, None, (PATTERN_BYTES - 500, PATTERN_BYTES + 500))
    assert part.ok and part.digest == data.digest("crc64nvme", PATTERN_BYTES - 500, PATTERN_BYTES + 501)
    beyond = await client.get("b", "dir/key one", 1, None, (data.size, data.size + 10))
    assert beyond.error == "416"
    wrong = await client.get("b", "dir/key one", data.size, "0" * 16)
    assert wrong.error == "verify"
    assert await client.delete("b", "dir/key one")
    assert (await client.get("b", "dir/key one", data.size, None)).error == "404"
    await client.close()


async def test_buffers_are_reused_and_large_bodies_spill_to_files(sink):
    store, url = sink
    client = _client(url)
    data = PatternData(2, 3 * PATTERN_BYTES)
    assert (await client.put("b", "k", data)).ok
    assert await client.delete("b", "k")
    assert store._pool.bytes == data.size            # kept for the next object of this size
    assert (await client.put("b", "k2", data)).ok
    assert store._pool.bytes == 0                    # and taken again
    big = PatternData(3, 7 * PATTERN_BYTES)          # over the 8 MiB budget with k2 stored
    put = await client.put("b", "big", big)
    assert put.ok and store.objects["b/big"].pieces[0].path is not None
    assert (await client.get("b", "big", big.size, put.digest)).ok
    await client.close()


async def test_aws_chunked_multipart_and_discard(sink):
    store, url = sink
    client = _client(url, chunk_bytes=100_000)
    data = PatternData(4, PATTERN_BYTES + 3)
    put = await client.put("b", "chunked", data, "chunked-crc32")
    assert put.ok
    assert store.objects["b/chunked"].size == data.size      # framing decoded, as S3 does
    assert (await client.get("b", "chunked", data.size, put.digest)).ok

    big = PatternData(5, 12 * PATTERN_BYTES + 7)
    multipart = await client.multipart_put("b", "mpu", big, 5 * PATTERN_BYTES)
    assert multipart.ok, multipart
    assert len(store.objects["b/mpu"].pieces) == 3
    assert (await client.get("b", "mpu", big.size, multipart.digest)).ok
    assert (await client.get("b", "mpu", 10, None, (5 * PATTERN_BYTES - 5, 5 * PATTERN_BYTES + 4))).ok

    dropped = await client.put("b", "dropped", data, extra_headers={"x-amz-meta-bench-discard": "1"})
    assert dropped.ok and "b/dropped" not in store.objects
    await client.close()


async def test_http_details_expect_continue_head_and_bad_requests(sink):
    _, url = sink
    port = int(url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"PUT /b/x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100")
    writer.write(b"abc")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    writer.write(b"HEAD /b/x HTTP/1.1\r\nHost: h\r\n\r\nGET /b/x HTTP/1.1\r\nHost: h\r\n\r\n")  # pipelined
    head = await reader.readuntil(b"\r\n\r\n")
    assert b"Content-Length: 3" in head
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and await reader.readexactly(3) == b"abc"
    writer.write(b"PUT /b/y HTTP/1.1\r\nHost: h\r\nContent-Length: nope\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"Connection: close" in head
    writer.close()


async def test_baseline_proxy_relays_exactly(sink):
    _, sink_url = sink
    runner = web.AppRunner(baseline.build_app(sink_url), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        client = _client(f"http://127.0.0.1:{port}")
        data = PatternData(6, PATTERN_BYTES * 2 + 99)
        put = await client.put("b", "via", data)
        assert put.ok
        assert (await client.get("b", "via", data.size, put.digest)).ok
        assert (await client.get("b", "via", 100, None, (7, 106))).ok
        assert (await client.get("b", "missing", 1, None)).error == "404"
        chunked = await client.put("b", "via-chunked", data, "chunked-crc32")
        assert chunked.ok and (await client.get("b", "via-chunked", data.size, chunked.digest)).ok
        await client.close()
    finally:
        await runner.cleanup()
