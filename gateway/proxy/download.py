"""GetObject / HeadObject: one upstream request → open the covering segments in the pool → the client.

Nothing unauthenticated is released: the key commitment is checked before the first byte, every segment is
opened (GCM tag, index, final flag) before its plaintext is written, and the first batch is opened before the
response headers go out, so most failures are a clean 500. A failure detected after the response started
aborts the connection: the client sees a broken transfer, never a clean end of a short or wrong body.
"""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from gateway import errors
from gateway.format.envelope import encryption_context, open_object_key, parse_metadata
from gateway.format.fetchplan import parse_content_range, upstream_range
from gateway.format.segments import open_batch
from gateway.format.sizes import SEALED_SEGMENT_SIZE_BYTES, SEGMENT_SIZE_BYTES, covering_segments, plaintext_size
from gateway.observability.logs import audit
from gateway.proxy.context import Gateway
from gateway.proxy.headers import client_response_headers
from gateway.proxy.pipeline import ordered_work
from gateway.proxy.responses import abort, relay_upstream_error, sse_headers
from gateway.s3.addressing import Target
from gateway.s3.metadata import envelope_fields
from gateway.s3.ranges import content_range, parse_range

log = logging.getLogger(__name__)

# Request headers of GET/HEAD that the store evaluates against the stored object (ETags are the store's).
_FORWARDED = ("if-match", "if-none-match", "if-modified-since", "if-unmodified-since",
              "x-amz-expected-bucket-owner", "x-amz-request-payer")


@dataclass
class _Sealed:
    buffer: bytearray
    size: int
    first_index: int


async def _sealed_batches(content: aiohttp.StreamReader, skip: int, need: int, first_index: int,
                          batch_bytes: int) -> AsyncIterator[_Sealed]:
    """`need` ciphertext bytes after skipping `skip`, cut into batches of whole sealed segments."""
    sealed_per_batch = batch_bytes // SEGMENT_SIZE_BYTES * SEALED_SEGMENT_SIZE_BYTES
    buffer, filled, index, got = bytearray(sealed_per_batch), 0, first_index, 0
    while got < need:
        chunk, end_of_http_chunk = await content.readchunk()  # no join of buffered chunks (see body.pieces)
        if not chunk:
            if end_of_http_chunk and not content.at_eof():
                continue
            raise errors.TamperedCiphertext("The stored object is shorter than its recorded size.")
        view = memoryview(chunk)
        if skip:
            dropped = min(skip, len(view))
            view, skip = view[dropped:], skip - dropped
        view = view[:need - got]
        got += len(view)
        while view:
            take = min(len(view), sealed_per_batch - filled)
            buffer[filled:filled + take] = view[:take]
            filled, view = filled + take, view[take:]
            if filled == sealed_per_batch:
                yield _Sealed(buffer, filled, index)
                buffer, filled = bytearray(sealed_per_batch), 0
                index += sealed_per_batch // SEALED_SEGMENT_SIZE_BYTES
    if filled:
        yield _Sealed(buffer, filled, index)


def _part_number(target: Target, range_value: str | None) -> None:
    part = target.query_map.get("partNumber")
    if part is None:
        return
    if range_value:
        raise errors.InvalidRequest("Cannot specify both Range header and partNumber query parameter.")
    if part != "1":
        raise errors.InvalidPartNumber()


async def get_object(gw: Gateway, request: web.Request, target: Target, principal: str,
                     head: bool) -> web.StreamResponse:
    assert target.bucket is not None and target.key is not None
    range_value = request.headers.get("Range")
    _part_number(target, range_value)
    query = [(k, v) for k, v in target.query if k != "partNumber"]
    headers = {name: request.headers[name] for name in _FORWARDED if name in request.headers}
    if request.headers.keys() & {"x-amz-server-side-encryption-customer-algorithm"}:
        raise errors.NotImplementedS3("SSE-C is not supported: the gateway encrypts objects itself.")
    fetch = None if head else upstream_range(range_value)
    if fetch is not None:
        headers["range"] = fetch
    response = await gw.upstream.request("HEAD" if head else "GET", target.bucket, target.key, query, headers)
    try:
        return await _answer(gw, request, target, principal, head, range_value, response)
    except errors.TamperedCiphertext:
        _integrity_failure(gw, target, principal, response_started=False)
        raise
    finally:
        # Whatever was not read (the tail of a window, an aborted transfer) must not be read now.
        response.close()


async def _answer(gw: Gateway, request: web.Request, target: Target, principal: str, head: bool,
                  range_value: str | None,
                  response: aiohttp.ClientResponse) -> web.StreamResponse:
    assert target.bucket is not None and target.key is not None
    if response.status == 416:
        raise errors.InvalidRange()
    if response.status == 304 or response.status == 412 or response.status >= 300:
        return await relay_upstream_error(response)
    envelope, wrapped = parse_metadata(envelope_fields(response.headers))
    if response.status == 206 and "Content-Range" in response.headers:
        window_first, window_last, total = parse_content_range(response.headers["Content-Range"])
    else:
        total = int(response.headers.get("Content-Length", "0"))
        window_first, window_last = 0, total - 1
    try:
        size = plaintext_size(total)
    except ValueError:
        raise errors.TamperedCiphertext("The stored object's size is impossible for its format.") from None
    selected = parse_range(range_value, size)
    start, end = selected if selected is not None else (0, size - 1)
    span = covering_segments(start, end, size)

    out = client_response_headers(response.headers)
    out.update(sse_headers(wrapped[0].key_id if wrapped else ""))
    out["Accept-Ranges"] = "bytes"
    out["Content-Length"] = str(span.length)
    status = 200
    if selected is not None:
        status = 206
        out["Content-Range"] = content_range(start, end, size)
    if head:
        return web.Response(status=status, headers=out)

    skip = span.ciphertext_start - window_first
    if skip < 0 or window_last < span.ciphertext_end:
        raise errors.UpstreamError("The object store returned a different byte range than requested.")
    dek = await gw.keys.unwrap(wrapped, encryption_context(target.bucket, target.key), principal)
    object_key = open_object_key(dek, envelope)
    del dek

    def open_(sealed: _Sealed) -> bytearray:
        return open_batch(object_key, sealed.first_index, memoryview(sealed.buffer)[:sealed.size],
                          span.final_segment)

    need = span.ciphertext_end - span.ciphertext_start + 1
    sealed = _sealed_batches(response.content, skip, need, span.first_segment, gw.batch_bytes)
    if need <= SEALED_SEGMENT_SIZE_BYTES:
        async def inline() -> AsyncIterator[bytearray]:
            # One segment: opened on the event loop (microseconds), no pool hop, no pipeline tasks.
            async for batch in sealed:
                yield open_(batch)
        plaintexts: AsyncIterator[bytearray] = inline()
    else:
        plaintexts = ordered_work(sealed, open_, gw.pool, gw.inflight_batches)
    # The first batch is opened before the status line is sent: most tampering becomes a clean 500.
    first = await anext(plaintexts, None)
    gw.metrics.ciphertext_bytes.labels("in").inc(need)
    stream = web.StreamResponse(status=status, headers=out)
    stream.content_length = span.length
    await stream.prepare(request)
    try:
        await _write_plaintext(gw, stream, first, plaintexts, span.skip_bytes, span.length)
    except Exception as exc:  # noqa: BLE001 - every failure after the status line ends the same way
        if isinstance(exc, errors.TamperedCiphertext):
            _integrity_failure(gw, target, principal, response_started=True)
        log.warning("download aborted after the response started: %s", type(exc).__name__)
        abort(request)
        return stream
    await stream.write_eof()
    return stream


async def _write_plaintext(gw: Gateway, stream: web.StreamResponse, first: bytearray | None,
                           rest: AsyncIterator[bytearray], skip: int, length: int) -> None:
    remaining = length

    async def write(plaintext: bytearray) -> None:
        nonlocal skip, remaining
        view = memoryview(plaintext)[skip:skip + remaining]
        skip = 0
        if view:
            await stream.write(view)
            remaining -= len(view)
            gw.metrics.plaintext_bytes.labels("out").inc(len(view))

    if first is not None:
        await write(first)
    async for plaintext in rest:
        await write(plaintext)
    if remaining:
        raise errors.TamperedCiphertext("The stored object ended before the requested range.")


def _integrity_failure(gw: Gateway, target: Target, principal: str, response_started: bool) -> None:
    gw.metrics.tamper_detections.inc()
    audit("IntegrityFailure", "refused" if not response_started else "connection_aborted", principal=principal,
          bucket=target.bucket, key=target.key)
