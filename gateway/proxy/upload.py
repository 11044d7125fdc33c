"""PutObject: client body → checks → seal in the pool → upstream, streamed with an exact Content-Length.

Fail closed: the ciphertext of the final segment is produced only after every client check (payload hash,
chunk/trailer signatures, checksums, length) has passed. If anything fails, the body stream to the upstream
raises before its last byte; aiohttp then drops the upstream connection, and the store discards the short
upload. Plaintext never leaves this process; no object that looks whole is left behind.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

from gateway import errors
from gateway.format.envelope import encryption_context, metadata_for, new_object_key
from gateway.format.segments import seal_batch
from gateway.format.sizes import SEGMENT_SIZE_BYTES, ciphertext_size
from gateway.proxy.body import ClientBody
from gateway.proxy.context import Gateway
from gateway.proxy.headers import object_write_headers
from gateway.proxy.pipeline import ordered_work
from gateway.proxy.responses import relay_upstream_error, sse_headers
from gateway.s3.addressing import Target
from gateway.s3.metadata import check_client_metadata
from gateway.s3.sigv4 import VerifiedRequest

# What the gateway's own metadata costs of S3's 2 KB user-metadata budget (header + one KMS-wrapped key).
RESERVED_METADATA_BYTES = 600
# Bodies up to one segment are sealed on the event loop: cheaper than the hop to the pool and back.
SMALL_BODY_BYTES = SEGMENT_SIZE_BYTES


@dataclass
class _Batch:
    buffer: bytearray
    size: int
    first_index: int
    final: bool


@dataclass
class _UploadState:
    error: BaseException | None = None
    echo_headers: dict[str, str] = field(default_factory=dict)


class _Buffers:
    """Plaintext batch buffers of one transfer, reused once sealed: a fresh 1 MiB bytearray is zero-filled and
    page-faulted in on every batch otherwise (256 faults per MiB; microseconds each in a VM)."""

    def __init__(self, size: int, keep: int) -> None:
        self._size, self._keep, self._free = size, keep, []

    def take(self) -> bytearray:
        return self._free.pop() if self._free else bytearray(self._size)

    def give(self, buffer: bytearray) -> None:
        if len(self._free) < self._keep and len(buffer) == self._size:
            self._free.append(buffer)


async def _batches(body: ClientBody, batch_bytes: int, buffers: _Buffers | None = None) -> AsyncIterator[_Batch]:
    """Plaintext cut into batches of whole segments; the last one, flagged final, only after the body's EOF."""
    segments_per_batch = batch_bytes // SEGMENT_SIZE_BYTES
    buffers = buffers or _Buffers(batch_bytes, 0)
    buffer, filled, index, batched = buffers.take(), 0, 0, 0
    async for piece in body.pieces():
        view = memoryview(piece)
        while view:
            take = min(len(view), batch_bytes - filled)
            buffer[filled:filled + take] = view[:take]
            filled, batched, view = filled + take, batched + take, view[take:]
            # A full buffer holding the body's last bytes is the final batch: it waits for EOF (and the
            # trailers) below. pieces() guarantees the body holds no more than body.length bytes.
            if filled == batch_bytes and batched < body.length:
                yield _Batch(buffer, filled, index, final=False)
                buffer, filled, index = buffers.take(), 0, index + segments_per_batch
    yield _Batch(buffer, filled, index, final=True)


async def put_object(gw: Gateway, request: web.Request, target: Target, verified: VerifiedRequest) -> web.Response:
    assert target.bucket is not None and target.key is not None
    check_client_metadata(request.headers, reserved_bytes=RESERVED_METADATA_BYTES)
    headers = object_write_headers(request.headers.items())
    body = ClientBody(request, verified)
    dek, wrapped = await gw.keys.generate(encryption_context(target.bucket, target.key), verified.access_key_id)
    envelope, object_key = new_object_key(dek)
    del dek  # only the derived object key is needed from here on
    for name, value in metadata_for(envelope, [wrapped]).items():
        headers["x-amz-meta-" + name] = value

    state = _UploadState()
    buffers = _Buffers(gw.batch_bytes, gw.inflight_batches + 2)

    def seal(batch: _Batch) -> bytearray:
        with memoryview(batch.buffer)[:batch.size] as view:
            if body.needs_digest:
                body.digest(view)
            if batch.final:
                state.echo_headers = body.verify()
            sealed_bytes = seal_batch(object_key, batch.first_index, view, batch.final)
        buffers.give(batch.buffer)  # list.append: atomic under the GIL; the loop only pops
        return sealed_bytes

    async def sealed() -> AsyncIterator[bytearray]:
        try:
            # ordered_work() already reads its source ahead in a task of its own: no second prefetch here
            # (each one holds up to `inflight_batches` more batches of every transfer in memory).
            async for chunk in ordered_work(_batches(body, gw.batch_bytes, buffers), seal, gw.pool,
                                            gw.inflight_batches):
                gw.metrics.ciphertext_bytes.labels("out").inc(len(chunk))
                yield chunk
        except BaseException as exc:
            state.error = exc
            raise
        gw.metrics.plaintext_bytes.labels("in").inc(body.length)

    upload_body: AsyncIterator[bytearray] | bytes
    if body.length <= SMALL_BODY_BYTES:
        # Small objects: one segment, sealed inline (microseconds of AES-GCM) — no pool hop, no pipeline tasks.
        try:
            batches = [batch async for batch in _batches(body, gw.batch_bytes, buffers)]
            upload_body = bytes(seal(batches[-1]))
        except Exception as exc:  # noqa: BLE001 - translated: a failed small upload is the client's error
            raise _client_error(exc) from None
        gw.metrics.ciphertext_bytes.labels("out").inc(len(upload_body))
        gw.metrics.plaintext_bytes.labels("in").inc(body.length)
    else:
        upload_body = sealed()
    try:
        response = await gw.upstream.request("PUT", target.bucket, target.key, target.query, headers,
                                              body=upload_body, content_length=ciphertext_size(body.length))
    except errors.S3Error:
        # The upstream request failed because our body stream raised: report the client-side cause.
        if state.error is not None:
            raise _client_error(state.error) from None
        raise
    if state.error is not None:
        response.close()
        raise _client_error(state.error) from None
    async with response:
        if response.status != 200:
            return await relay_upstream_error(response)
        out = {name: response.headers[name] for name in ("ETag", "x-amz-version-id") if name in response.headers}
        out.update(state.echo_headers)
        out.update(sse_headers(wrapped.key_id))
        return web.Response(status=200, headers=out)


def _client_error(exc: BaseException) -> BaseException:
    if isinstance(exc, errors.S3Error):
        return exc
    # A client that vanished mid-body, or a read error: the upload is incomplete and was not stored.
    return errors.IncompleteBody()
