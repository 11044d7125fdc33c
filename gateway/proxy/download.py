"""GetObject / HeadObject: the object as plaintext (gateway.proxy.objectreader), streamed to the client.

The first batch is opened before the response headers go out, so most failures are a clean 500. A failure
detected after the response started aborts the connection: the client sees a broken transfer, never a clean
end of a short or wrong body.
"""
from __future__ import annotations

import logging

from aiohttp import web

from gateway import errors
from gateway.observability.logs import audit
from gateway.proxy.context import Gateway
from gateway.proxy.idle import IdleWatch, client_idle
from gateway.proxy.pipeline import aclose_quietly
from gateway.proxy.objectreader import ObjectReader, UpstreamAnswer, part_number_of
from gateway.proxy.responses import abort, relay_upstream_error
from gateway.s3.addressing import Target

log = logging.getLogger(__name__)

# Request headers of GET/HEAD that the store evaluates against the stored object (ETags are the store's).
_FORWARDED = ("if-match", "if-none-match", "if-modified-since", "if-unmodified-since",
              "x-amz-expected-bucket-owner", "x-amz-request-payer")


async def get_object(gw: Gateway, request: web.Request, target: Target, principal: str,
                     head: bool) -> web.StreamResponse:
    assert target.bucket is not None and target.key is not None
    if request.headers.keys() & {"x-amz-server-side-encryption-customer-algorithm"}:
        raise errors.NotImplementedS3("SSE-C is not supported: the gateway encrypts objects itself.")
    range_value = request.headers.get("Range")
    reader = ObjectReader(gw, target.bucket, target.key, principal,
                          [(k, v) for k, v in target.query if k != "partNumber"], head=head, range_value=range_value,
                          part_number=part_number_of(target.query_map.get("partNumber"), range_value),
                          conditions={name: request.headers[name] for name in _FORWARDED if name in request.headers})
    try:
        try:
            plain = await reader.open()
            if plain.views is None:
                return web.Response(status=plain.status, headers=plain.headers)
            # The first batch is opened before the status line is sent: most tampering becomes a clean 500.
            first = await anext(plain.views, None)
        except UpstreamAnswer as answer:
            return await relay_upstream_error(answer.response)
        except errors.TamperedCiphertext:
            _integrity_failure(gw, target, principal, response_started=False)
            raise
        stream = web.StreamResponse(status=plain.status, headers=plain.headers)
        stream.content_length = plain.length
        transport = request.transport
        # A client that stops reading: the watch sees the transport's write buffer stop draining while a write
        # waits, and aborts the connection (never a clean end), which ends the write below.
        watch = client_idle(gw.metrics, gw.client_idle_seconds, "response_body", lambda: abort(request),
                            transport.get_write_buffer_size if transport is not None else None)
        try:
            watch.waiting()
            await stream.prepare(request)
            if first is not None:
                await _write(gw, stream, first, watch)
            async for view in plain.views:
                await _write(gw, stream, view, watch)
        except Exception as exc:  # noqa: BLE001 - every failure after the status line ends the same way
            if isinstance(exc, errors.TamperedCiphertext):
                _integrity_failure(gw, target, principal, response_started=True)
            if not watch.fired:
                log.warning("download aborted after the response started: %s", type(exc).__name__)
            abort(request)
            return stream
        finally:
            watch.close()
            # The pipeline now, however the download ended: its task, batches and budget share are released here.
            await aclose_quietly(plain.views)
        await stream.write_eof()
        return stream
    finally:
        reader.close()


async def _write(gw: Gateway, stream: web.StreamResponse, view: memoryview, watch: IdleWatch) -> None:
    watch.waiting()
    await stream.write(view)
    watch.moved()
    gw.metrics.plaintext_bytes.labels("out").inc(len(view))


def _integrity_failure(gw: Gateway, target: Target, principal: str, response_started: bool) -> None:
    gw.metrics.tamper_detections.inc()
    audit("IntegrityFailure", "refused" if not response_started else "connection_aborted", principal=principal,
          bucket=target.bucket, key=target.key)
