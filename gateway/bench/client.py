"""The load client: SigV4-signed S3 requests, bodies generated as they are sent, every GET verified by digest.

One `S3Client` per target, on keep-alive connections of gateway/bench/wire.py (the client shares its CPU with
the sink, so it must be cheap per byte: a GET body is received into one reused buffer and digested there).
Every request is signed (gateway.s3.sigv4.sign_request) even where nobody checks (the sink, the baseline
proxy), so every target sees the same bytes on the wire. Each operation returns an `OpResult` with its
latency, time to first byte and, on failure, an error key: the HTTP status, `verify` (digest mismatch),
`length` (short or long body) or `exc:<ExceptionName>`.
"""
from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from awscrt import checksums as crt

from gateway.bench.datagen import DEFAULT_CHUNK_BYTES, PATTERN_BYTES, PatternData, new_digest
from gateway.bench.wire import ConnectionPool, ProtocolError, Response, render_head
from gateway.s3.sigv4 import UNSIGNED_PAYLOAD, Credentials, sign_request



@dataclass
class OpResult:
    ok: bool
    latency: float           # seconds, request start → response complete
    ttfb: float | None       # seconds, request start → first body byte (GET) or response head (PUT)
    payload_bytes: int       # plaintext bytes moved (sent for PUT, received for GET)
    error: str | None = None
    status: int | None = None
    digest: str | None = None
    etag: str | None = None
    body: bytes = b""


class Progress:
    """Bytes moved so far; read by the progress line. A plain counter: no lock needed in one event loop."""
    __slots__ = ("bytes", "ops")

    def __init__(self) -> None:
        self.bytes = 0
        self.ops = 0


def chunk_sizes(size: int, chunk_bytes: int) -> Iterator[int]:
    """The sizes of PatternData.chunks(0, size, chunk_bytes), without generating them."""
    chunk_bytes = max(1, min(chunk_bytes, PATTERN_BYTES))
    position = 0
    while position < size:
        stop = min(size, position - position % PATTERN_BYTES + PATTERN_BYTES, position + chunk_bytes)
        yield stop - position
        position = stop


def aws_chunked_length(size: int, chunk_bytes: int, trailer_line: bytes) -> int:
    """Encoded length of an unsigned aws-chunked body with one trailer line (`name:value`, no CRLF)."""
    total = sum(len(f"{n:x}") + 2 + n + 2 for n in chunk_sizes(size, chunk_bytes))
    return total + len(b"0\r\n") + len(trailer_line) + 2 + 2


def crc32_b64(value: int) -> str:
    return base64.b64encode(value.to_bytes(4, "big")).decode()


def _timeout(size: int) -> float:
    # Generous: a transfer may take its size at 10 MB/s, and never less than a minute.
    return max(60.0, size / 10e6)


class S3Client:
    def __init__(self, endpoint: str, credentials: Credentials, region: str, *, connections: int,
                 digest: str = "crc64nvme", chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                 progress: Progress | None = None) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"only http:// endpoints are supported, not {endpoint!r}")
        self.endpoint = endpoint.rstrip("/")
        self._host = parts.netloc
        self._pool = ConnectionPool(parts.hostname, parts.port or 80, max(1, connections))
        self._credentials = credentials
        self._region = region
        self._digest_name = digest
        self._chunk_bytes = chunk_bytes
        self.progress = progress or Progress()

    async def close(self) -> None:
        self._pool.close()

    # --- one exchange ------------------------------------------------------------------------------------------
    async def _exchange(self, method: str, bucket: str, key: str, query: str, headers: dict[str, str],
                        payload_hash: str, body: Iterable | bytes | None, on_body, timeout: float,
                        ) -> Response:
        raw_path = f"/{quote(bucket, safe='')}/{quote(key, safe='/-_.~')}"
        out = {"host": self._host, **{k.lower(): v for k, v in headers.items()}}
        out.update(sign_request(method, raw_path, query, out, payload_hash, self._credentials, self._region,
                                datetime.datetime.now(datetime.timezone.utc)))
        target = raw_path + (f"?{query}" if query else "")
        head = render_head(f"{method} {target} HTTP/1.1", out.items())
        connection = await self._pool.acquire()
        done = False
        try:
            async with asyncio.timeout(timeout):
                response = await connection.request(head, body, on_body, head_request=method == "HEAD")
            done = True
            return response
        finally:
            self._pool.release(connection, reusable=done)

    # --- bodies ------------------------------------------------------------------------------------------------
    def _plain_body(self, data: PatternData, digest, start: int = 0, end: int | None = None
                    ) -> Iterator[bytearray]:
        progress = self.progress
        for piece in data.chunks(start, end, self._chunk_bytes):
            digest.update(piece)
            progress.bytes += len(piece)
            yield piece

    def _aws_chunked_body(self, data: PatternData, digest) -> Iterator[bytes | bytearray]:
        progress = self.progress
        crc = 0
        for piece in data.chunks(0, None, self._chunk_bytes):
            digest.update(piece)
            crc = crt.crc32(piece, crc)
            progress.bytes += len(piece)
            yield f"{len(piece):x}\r\n".encode()
            yield piece
            yield b"\r\n"
        yield b"0\r\nx-amz-checksum-crc32:" + crc32_b64(crc).encode() + b"\r\n\r\n"

    # --- operations --------------------------------------------------------------------------------------------
    async def put(self, bucket: str, key: str, data: PatternData, payload: str = "unsigned",
                  precomputed: str | int | None = None, extra_headers: dict[str, str] | None = None) -> OpResult:
        """PutObject of a generated body. `precomputed`: the body's hex SHA-256 (`signed`) or CRC32 (`crc32`),
        computed beforehand so the client's own hashing is not timed."""
        digest = new_digest(self._digest_name)
        headers: dict[str, str] = dict(extra_headers or {})
        payload_hash = UNSIGNED_PAYLOAD
        if payload == "chunked-crc32":
            trailer = b"x-amz-checksum-crc32:" + b"A" * 8
            headers.update({"content-encoding": "aws-chunked", "x-amz-decoded-content-length": str(data.size),
                            "x-amz-trailer": "x-amz-checksum-crc32", "x-amz-sdk-checksum-algorithm": "CRC32",
                            "content-length": str(aws_chunked_length(data.size, self._chunk_bytes, trailer))})
            payload_hash = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
            body: Iterable = self._aws_chunked_body(data, digest)
        else:
            headers["content-length"] = str(data.size)
            if payload == "signed":
                assert isinstance(precomputed, str)
                payload_hash = precomputed
            elif payload == "crc32":
                assert isinstance(precomputed, int)
                headers["x-amz-checksum-crc32"] = crc32_b64(precomputed)
                headers["x-amz-sdk-checksum-algorithm"] = "CRC32"
            elif payload != "unsigned":
                raise ValueError(f"unknown payload mode {payload!r}")
            body = self._plain_body(data, digest)
        result = await self._upload("PUT", bucket, key, "", headers, payload_hash, body, data.size)
        if result.ok:
            result.digest = digest.hexdigest()
            self.progress.ops += 1
        return result

    async def _upload(self, method: str, bucket: str, key: str, query: str, headers: dict[str, str],
                      payload_hash: str, body: Iterable | bytes, size: int) -> OpResult:
        started = time.perf_counter()
        try:
            response = await self._exchange(method, bucket, key, query, headers, payload_hash, body, None,
                                            _timeout(size))
        except (OSError, ProtocolError, TimeoutError) as exc:
            return OpResult(False, time.perf_counter() - started, None, 0, f"exc:{type(exc).__name__}")
        latency = time.perf_counter() - started
        if response.status != 200:
            return OpResult(False, latency, response.ttfb, 0, str(response.status), response.status,
                            body=response.error_body)
        return OpResult(True, latency, response.ttfb, size, None, 200, None, response.header("etag"),
                        response.error_body)

    async def get(self, bucket: str, key: str, expected_size: int, expected_digest: str | None,
                  byte_range: tuple[int, int] | None = None) -> OpResult:
        """GetObject (whole, or bytes [first, last] inclusive), digested as it streams and checked against the
        expected length and digest."""
        headers = {}
        if byte_range is not None:
            headers["range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
        expected_status = 200 if byte_range is None else 206
        digest = new_digest(self._digest_name)
        update = digest.update
        progress = self.progress

        def on_body(view: memoryview) -> None:
            update(view)
            progress.bytes += len(view)

        started = time.perf_counter()
        try:
            response = await self._exchange("GET", bucket, key, "", headers, UNSIGNED_PAYLOAD, None, on_body,
                                            _timeout(expected_size))
        except (OSError, ProtocolError, TimeoutError) as exc:
            return OpResult(False, time.perf_counter() - started, None, 0, f"exc:{type(exc).__name__}")
        latency = time.perf_counter() - started
        if response.status != expected_status:
            return OpResult(False, latency, response.ttfb, 0, str(response.status), response.status,
                            body=response.error_body)
        if response.body_bytes != expected_size:
            return OpResult(False, latency, response.ttfb, response.body_bytes, "length", response.status)
        value = digest.hexdigest()
        if expected_digest is not None and value != expected_digest:
            return OpResult(False, latency, response.ttfb, response.body_bytes, "verify", response.status, value)
        progress.ops += 1
        return OpResult(True, latency, response.ttfb, response.body_bytes, None, response.status, value)

    async def delete(self, bucket: str, key: str) -> bool:
        try:
            response = await self._exchange("DELETE", bucket, key, "", {}, UNSIGNED_PAYLOAD, None, None, 60)
        except (OSError, ProtocolError, TimeoutError):
            return False
        return response.status in (200, 204)

    async def multipart_put(self, bucket: str, key: str, data: PatternData, part_bytes: int) -> OpResult:
        """CreateMultipartUpload, UploadPart × N (sequential, unsigned payloads), CompleteMultipartUpload; timed
        as one operation. TTFB is the time to the first part's answer."""
        digest = new_digest(self._digest_name)
        started = time.perf_counter()

        def failed(result: OpResult, error: str | None = None) -> OpResult:
            return OpResult(False, time.perf_counter() - started, None, 0, error or result.error, result.status,
                            body=result.body)

        created = await self._upload("POST", bucket, key, "uploads=", {"content-length": "0"}, UNSIGNED_PAYLOAD,
                                     b"", 0)
        if not created.ok:
            return failed(created)
        upload_id = created.body.decode(errors="replace").partition("<UploadId>")[2].partition("</UploadId>")[0]
        if not upload_id:
            return failed(created, "xml")
        quoted = quote(upload_id, safe="-_.~")
        parts: list[tuple[int, str]] = []
        ttfb = None
        for number, start in enumerate(range(0, max(data.size, 1), part_bytes), 1):
            end = min(data.size, start + part_bytes)
            result = await self._upload("PUT", bucket, key, f"partNumber={number}&uploadId={quoted}",
                                        {"content-length": str(end - start)}, UNSIGNED_PAYLOAD,
                                        self._plain_body(data, digest, start, end), end - start)
            if not result.ok:
                await self._upload("DELETE", bucket, key, f"uploadId={quoted}", {}, UNSIGNED_PAYLOAD, b"", 0)
                return failed(result)
            ttfb = ttfb if ttfb is not None else time.perf_counter() - started
            parts.append((number, result.etag or ""))
        xml = ("<CompleteMultipartUpload>" + "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>" for n, etag in parts)
            + "</CompleteMultipartUpload>").encode()
        completed = await self._upload("POST", bucket, key, f"uploadId={quoted}", {"content-length": str(len(xml))},
                                       hashlib.sha256(xml).hexdigest(), xml, 0)
        if not completed.ok:
            return failed(completed)
        if b"<Error>" in completed.body:
            return failed(completed, "complete-error")
        self.progress.ops += 1
        return OpResult(True, time.perf_counter() - started, ttfb, data.size, None, 200, digest.hexdigest())
