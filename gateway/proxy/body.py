"""The client's request body, as plaintext: raw or aws-chunked decoded, with every client-side check.

Checks (payload SHA-256, chunk and trailer signatures, Content-MD5, x-amz-checksum-*) all run over the
plaintext; `digest()` may run in the crypto pool, but strictly in body order, one call at a time.
"""
from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping

from aiohttp import web

from gateway import errors
from gateway.proxy.context import Gateway
from gateway.proxy.idle import ClientStalled, client_idle
from gateway.s3.checksums import BodyChecks
from gateway.s3.chunked import AwsChunkedDecoder
from gateway.numerals import decimal
from gateway.s3.sigv4 import STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, ChunkSigner, VerifiedRequest

# S3's largest single PUT. A larger declared length is refused before any byte is read.
MAX_PUT_BYTES = 5 * 1024**3


def _is_hex_sha256(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value.lower())


def declared_length(headers: Mapping[str, str], payload_hash: str, content_length: int | None) -> int:
    """The plaintext length the client announced (aws-chunked: x-amz-decoded-content-length)."""
    if payload_hash.startswith("STREAMING-"):
        raw = headers.get("x-amz-decoded-content-length")
        if raw is None:
            raise errors.MissingContentLength("aws-chunked uploads need x-amz-decoded-content-length.")
    elif content_length is None:
        raise errors.MissingContentLength()
    else:
        raw = str(content_length)
    # Capped just past the limit: a numeral of any length is an EntityTooLarge, not int()'s ValueError.
    length = decimal(raw, cap=MAX_PUT_BYTES + 1)
    if length is None:
        raise errors.InvalidArgument("The declared content length is not a number.")
    if length > MAX_PUT_BYTES:
        raise errors.EntityTooLarge(ProposedSize=str(length), MaxSizeAllowed=str(MAX_PUT_BYTES))
    return length


class ClientBody:
    """`failure` is the error this body raised (the client's doing: a short, long or invalid body, a vanished or
    stalled client), as opposed to failures elsewhere in the transfer (the store's side): only it is reported as
    the client's fault."""

    def __init__(self, request: web.Request, verified: VerifiedRequest, gw: Gateway | None = None) -> None:
        headers = request.headers
        payload_hash = verified.payload_hash
        # A request without Content-Length and without a chunked body has an empty body (GET, HEAD, DELETE).
        content_length = request.content_length if request.body_exists else (request.content_length or 0)
        self.length = declared_length(headers, payload_hash, content_length)
        self._request = request
        self._checks = BodyChecks.from_headers(headers)
        self._sha256 = hashlib.sha256() if _is_hex_sha256(payload_hash) else None
        self._claimed_sha256 = payload_hash.lower()
        self._decoder: AwsChunkedDecoder | None = None
        if payload_hash.startswith("STREAMING-"):
            signed = payload_hash in (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER)
            self._decoder = AwsChunkedDecoder(ChunkSigner(verified) if signed else None,
                                              expect_trailer=payload_hash.endswith("-TRAILER"),
                                              decoded_length=self.length)
        self._trailers: dict[str, str] = {}
        self.received = 0
        self.failure: errors.S3Error | None = None
        self._gw = gw

    @property
    def needs_digest(self) -> bool:
        return self._sha256 is not None or self._checks.active

    async def pieces(self) -> AsyncIterator[bytes | memoryview]:
        """Plaintext pieces as they arrive; raises IncompleteBody if the body is shorter or longer than declared,
        RequestTimeout if no byte arrives for `timeouts.client_idle_seconds` while one is awaited."""
        content = self._request.content
        watch = None if self._gw is None else client_idle(
            self._gw.metrics, self._gw.client_idle_seconds, "request_body",
            lambda: content.set_exception(ClientStalled()))
        try:
            while True:
                if watch is not None:
                    watch.waiting()
                try:
                    # readchunk(), not readany(): readany() joins every chunk buffered so far into a new bytes
                    # object (a copy of the whole body, for nothing: the caller copies the pieces anyway).
                    chunk, end_of_http_chunk = await content.readchunk()
                    if watch is not None:
                        watch.moved()
                    if not chunk:
                        if end_of_http_chunk and not content.at_eof():
                            continue  # a chunked transfer-encoding boundary, not the end of the body
                        break
                    pieces = self._decoder.feed(chunk) if self._decoder is not None else (chunk,)
                    for piece in pieces:
                        self.received += len(piece)
                        if self.received > self.length:
                            raise errors.IncompleteBody("The body is longer than the declared length.")
                except Exception as exc:  # noqa: BLE001 - the body's own failure: recorded as the client's
                    raise self._failed(exc) from None
                # Outside the try: an exception thrown in at a yield (the consumer's failure, a GeneratorExit)
                # is not the client's doing.
                for piece in pieces:
                    yield piece
            try:
                if self._decoder is not None:
                    self._trailers = self._decoder.finish()
                if self.received != self.length:
                    raise errors.IncompleteBody()
            except Exception as exc:  # noqa: BLE001 - as above
                raise self._failed(exc) from None
        finally:
            if watch is not None:
                watch.close()

    def _failed(self, exc: Exception) -> errors.S3Error:
        # A client that vanished mid-body (aiohttp's connection errors): the upload is incomplete, not stored.
        if isinstance(exc, ClientStalled):
            self.failure = errors.RequestTimeout()
        else:
            self.failure = exc if isinstance(exc, errors.S3Error) else errors.IncompleteBody()
        return self.failure

    def digest(self, data: bytes | bytearray | memoryview) -> None:
        if self._checks.active:
            self._checks.update(data)
        if self._sha256 is not None:
            self._sha256.update(data)

    def verify(self) -> dict[str, str]:
        """After the last digest(): raise if any check fails; else the checksum headers to echo to the client."""
        if self._sha256 is not None and self._sha256.hexdigest() != self._claimed_sha256:
            raise errors.XAmzContentSHA256Mismatch()
        return self._checks.finish(self._trailers)
