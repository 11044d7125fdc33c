"""PutObject: client body → checks → seal in the pool → upstream, streamed with an exact Content-Length.

Fail closed: the ciphertext of the final segment is produced only after every client check (payload hash,
chunk/trailer signatures, checksums, length) has passed. If anything fails, the body stream to the upstream
raises before its last byte; aiohttp then drops the upstream connection, and the store discards the short
upload. Plaintext never leaves this process; no object that looks whole is left behind.
"""
from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from gateway import errors
from gateway.format.envelope import ObjectKey, WrappedKey, encryption_context, metadata_for, new_object_key
from gateway.format.segments import seal_batch
from gateway.format.sizes import SEGMENT_SIZE_BYTES, ciphertext_size, largest_plaintext_within
from gateway.proxy.body import ClientBody
from gateway.proxy.budget import Lease
from gateway.proxy.context import Gateway
from gateway.proxy.headers import object_write_headers
from gateway.proxy.idle import IdleWatch
from gateway.proxy.objectreader import PlaintextBody
from gateway.proxy.pipeline import aclose_quietly, ordered_work
from gateway.proxy.responses import relay_upstream_error, sse_headers
from gateway.s3.addressing import Target
from gateway.s3.metadata import check_client_metadata
from gateway.s3.sigv4 import VerifiedRequest

log = logging.getLogger(__name__)

# What the gateway's own metadata costs of S3's 2 KB user-metadata budget: the header entry, and each KMS-wrapped
# copy of the data key (two with a second KMS key: gw.wrapped_copies).
HEADER_METADATA_BYTES = 150
WRAPPED_COPY_METADATA_BYTES = 450


def reserved_metadata_bytes(gw: Gateway) -> int:
    return HEADER_METADATA_BYTES + WRAPPED_COPY_METADATA_BYTES * gw.wrapped_copies
# S3 stores at most 5 GiB in one PUT (and in one part). The gateway's tags must fit in that too.
MAX_STORED_PUT_BYTES = 5 * 1024**3
MAX_SINGLE_PUT_PLAINTEXT_BYTES = largest_plaintext_within(MAX_STORED_PUT_BYTES)
# Bodies up to one segment are sealed on the event loop: cheaper than the hop to the pool and back.
SMALL_BODY_BYTES = SEGMENT_SIZE_BYTES


@dataclass
class _Batch:
    pieces: list[memoryview]  # the body's bytes as they arrived (views, not copies): sealed in place
    size: int
    first_index: int
    final: bool


@dataclass
class _UploadState:
    # A failure of the body's checks (payload hash, checksums, trailer): the client's, found while sealing.
    error: errors.S3Error | None = None
    echo_headers: dict[str, str] = field(default_factory=dict)
    # Set by send_sealed while the store is asked for the body: marks the waits on the store to take a chunk.
    store_watch: IdleWatch | None = None


async def _batches(body: ClientBody | PlaintextBody, batch_bytes: int, lease: Lease | None = None,
                   first_size: int | None = None) -> AsyncIterator[_Batch]:
    """Plaintext cut into batches of whole segments; the last one, flagged final, only after the body's EOF.

    A batch is a list of views of the pieces as they arrived: the event loop never copies the body; the crypto
    pool seals straight from the pieces (gateway.format.segments). With a lease, each batch is started only once
    the memory budget allows it, with the size the budget gives it (else `batch_bytes`).
    """
    size = first_size or (await lease.acquire() if lease is not None else batch_bytes)
    pieces: list[memoryview] = []
    filled, index, batched = 0, 0, 0
    async for piece in body.pieces():
        view = memoryview(piece)
        while view:
            take = min(len(view), size - filled)
            pieces.append(view[:take])
            filled, batched, view = filled + take, batched + take, view[take:]
            # A full batch holding the body's last bytes is the final batch: it waits for EOF (and the
            # trailers) below. pieces() guarantees the body holds no more than body.length bytes.
            if filled == size and batched < body.length:
                yield _Batch(pieces, filled, index, final=False)
                index += size // SEGMENT_SIZE_BYTES
                size = await lease.acquire() if lease is not None else batch_bytes
                pieces, filled = [], 0
    yield _Batch(pieces, filled, index, final=True)


@dataclass
class SealedBody:
    """A client body on its way to the store as ciphertext: bytes (small bodies, sealed already) or a stream
    sealed batch by batch; `state` learns the echo headers once the final batch passed every check."""
    body: AsyncIterator[memoryview] | bytes
    content_length: int
    state: _UploadState
    source: ClientBody | PlaintextBody
    lease: Lease | None = None

    def failure(self) -> errors.S3Error | None:
        """The source's own failure (the client's, or the copy source's read), else a failed check; None if the
        body did not fail — then whatever went wrong is the store's side."""
        return self.source.failure or self.state.error

    async def close(self) -> None:
        """End the sealing pipeline now, whatever state it is in: its tasks, batches and budget share are released
        here, not whenever the garbage collector finds the abandoned generator (gateway.proxy.pipeline)."""
        if not isinstance(self.body, bytes):
            await aclose_quietly(self.body)
        if self.lease is not None:
            self.lease.close()  # also when the stream never started (the store failed before asking for it)
        # A recorded failure's traceback holds the frames that read and sealed the body, with their batches
        # (megabytes), in a reference cycle with the failure itself: only the cyclic garbage collector would free
        # them, whenever it runs. Their locals are dropped now.
        for failure in (self.source.failure, self.state.error):
            if failure is not None:
                traceback.clear_frames(failure.__traceback__)


async def seal_client_body(gw: Gateway, body: ClientBody | PlaintextBody, key: ObjectKey, part_number: int = 0
                           ) -> SealedBody:
    """Seal `body` under `key` (an object key, or a part key with its part number in every nonce).

    A client body takes its batches from the process-wide budget; a PlaintextBody (UploadPartCopy) does not:
    its bytes are already counted by the read that produces them, and a second lease could wait on itself.
    """
    state = _UploadState()
    ciphertext_out = gw.metrics.ciphertext_bytes.labels("out")

    def seal(batch: _Batch) -> bytearray:
        try:
            if body.needs_digest:
                for piece in batch.pieces:
                    body.digest(piece)
            if batch.final:
                state.echo_headers = body.verify()
        except errors.S3Error as exc:
            state.error = exc
            raise
        return seal_batch(key, batch.first_index, batch.pieces, batch.final, part_number)

    async def sealed(lease: Lease | None, first_size: int | None) -> AsyncIterator[memoryview]:
        # ordered_work() already reads its source ahead in a task of its own: no second prefetch here
        # (each one holds up to `inflight_batches` more batches of every transfer in memory).
        chunks = ordered_work(_batches(body, gw.batch_bytes, lease, first_size), seal, gw.pool,
                              gw.inflight_batches)
        try:
            async for chunk in chunks:
                ciphertext_out.inc(len(chunk))
                # Suspended at this yield, the body waits on the store alone: aiohttp resumes it once the previous
                # chunk is written. (Waits on the client happen inside the pipeline, watched by ClientBody.)
                if state.store_watch is not None:
                    state.store_watch.waiting()
                # A view, not the bytearray: aiohttp cuts every chunk to the remaining Content-Length with
                # chunk[:n], which copies a bytearray (1 MiB per batch, on the event loop) but not a view.
                yield memoryview(chunk)
                if state.store_watch is not None:
                    state.store_watch.moved()
                if lease is not None:
                    lease.release()  # this batch is written (aiohttp asks for the next one only then)
        finally:
            # The pipeline first (its task, its batches), then the budget share those batches were counted in.
            await aclose_quietly(chunks)
            if lease is not None:
                lease.close()
        gw.metrics.plaintext_bytes.labels("in").inc(body.length)

    size = ciphertext_size(body.length)
    if body.length > SMALL_BODY_BYTES:
        if not isinstance(body, ClientBody):
            return SealedBody(sealed(None, None), size, state, body)
        # The first batch's share is taken before the store is asked: memory exhausted is SlowDown (503) from
        # the budget's bounded wait, before an upstream connection is taken for nothing.
        lease = gw.budget.lease()
        try:
            first_size = await lease.acquire()
        except BaseException:
            lease.close()
            raise
        return SealedBody(sealed(lease, first_size), size, state, body, lease)
    # Small bodies: one segment, sealed inline (microseconds of AES-GCM) — no pool hop, no pipeline tasks.
    batches = [batch async for batch in _batches(body, gw.batch_bytes)]
    data = bytes(seal(batches[-1]))
    gw.metrics.ciphertext_bytes.labels("out").inc(len(data))
    gw.metrics.plaintext_bytes.labels("in").inc(body.length)
    return SealedBody(data, size, state, body)


async def send_sealed(gw: Gateway, sealed: SealedBody, bucket: str, key: str, query: list[tuple[str, str]],
                      headers: dict[str, str]) -> aiohttp.ClientResponse:
    """PUT the sealed body upstream. Who is at fault decides the answer: a failure of the body itself (the
    client's bytes, checks or connection; the copy source's read) is raised as that; any other failure is the
    store's side (gateway.proxy.storefaults: a retryable 5xx), even when it broke the body's stream — an upstream
    reset must not read as the client's IncompleteBody, which SDKs do not retry."""
    try:
        try:
            response = await _put_watched(gw, sealed, bucket, key, query, headers)
        except errors.S3Error:
            failure = sealed.failure()
            if failure is not None:
                raise failure from None
            raise
        failure = sealed.failure()
        if failure is not None:
            response.close()
            raise failure from None
        return response
    finally:
        await sealed.close()


async def _put_watched(gw: Gateway, sealed: SealedBody, bucket: str, key: str, query: list[tuple[str, str]],
                       headers: dict[str, str]) -> aiohttp.ClientResponse:
    """The upstream PUT; a streamed body the store stops taking for `upstream.read_timeout_seconds` cancels it.
    Cancelled mid-body, the request drops its connection before the last byte: the store keeps nothing."""
    put = asyncio.ensure_future(gw.upstream.request("PUT", bucket, key, query, headers, body=sealed.body,
                                                    content_length=sealed.content_length))
    if isinstance(sealed.body, bytes):
        return await put
    stalled = False

    def store_stalled() -> None:
        nonlocal stalled
        stalled = True
        gw.metrics.transfer_timeouts.labels("store_upload").inc()
        log.warning("upload cut: the object store took no body bytes for %ss", gw.upstream.idle_seconds)
        put.cancel()

    sealed.state.store_watch = IdleWatch(gw.upstream.idle_seconds, store_stalled)
    try:
        return await put
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if stalled and not (current is not None and current.cancelling()):
            raise errors.UpstreamError("The object store stopped taking the upload's body; retry.") from None
        raise
    finally:
        sealed.state.store_watch.close()
        sealed.state.store_watch = None


async def new_object(gw: Gateway, bucket: str, key: str, principal: str, headers: dict[str, str]
                     ) -> tuple[ObjectKey, list[WrappedKey]]:
    """A new one-request object's key (one KMS GenerateDataKey), its envelope added to the upstream `headers`."""
    dek, wrapped = await gw.keys.generate(encryption_context(bucket, key), principal)
    envelope, object_key = new_object_key(dek)
    del dek  # only the derived object key is needed from here on
    for name, value in metadata_for(envelope, wrapped).items():
        headers["x-amz-meta-" + name] = value
    return object_key, wrapped


async def put_object(gw: Gateway, request: web.Request, target: Target, verified: VerifiedRequest) -> web.Response:
    assert target.bucket is not None and target.key is not None
    check_client_metadata(request.headers, reserved_bytes=reserved_metadata_bytes(gw))
    headers = object_write_headers(request.headers.items())
    body = ClientBody(request, verified, gw)
    if body.length > MAX_SINGLE_PUT_PLAINTEXT_BYTES:
        raise errors.EntityTooLarge(ProposedSize=str(body.length), MaxSizeAllowed=str(MAX_SINGLE_PUT_PLAINTEXT_BYTES))
    object_key, wrapped = await new_object(gw, target.bucket, target.key, verified.access_key_id, headers)
    sealed = await seal_client_body(gw, body, object_key)
    response = await send_sealed(gw, sealed, target.bucket, target.key, target.query, headers)
    async with response:
        if response.status != 200:
            return await relay_upstream_error(response)
        out = {name: response.headers[name] for name in ("ETag", "x-amz-version-id") if name in response.headers}
        out.update(sealed.state.echo_headers)
        out.update(sse_headers(wrapped[0].key_id))
        return web.Response(status=200, headers=out)

