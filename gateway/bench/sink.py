"""A minimal, fast S3-compatible sink — for benchmarks and memory tests only, never part of the product.

moto is far too slow to measure a gateway against. This sink answers PutObject (plain or aws-chunked bodies),
GetObject (with a single Range), HeadObject, DeleteObject, CreateBucket/HeadBucket (always succeed), minimal
ListBuckets and ListObjects (one page, no delimiter) and the multipart calls (CreateMultipartUpload, UploadPart,
CompleteMultipartUpload, AbortMultipartUpload). It keeps bodies in memory while they fit a budget (default
4 GiB) and in files under a temporary directory beyond it, keeps user metadata in memory, checks no signature
and implements nothing else. It binds to 127.0.0.1 only.

It is an instrument: it shares a CPU with the load client, so it must cost as little as possible per byte.
It speaks HTTP/1.1 itself (gateway/bench/wire.py) on uvloop: a PUT body is received by the kernel straight into
the object's buffer (no Python-level copy), a GET is written from memoryviews of it; large buffers are reused
across objects of the same size (a fresh buffer costs a page fault per 4 KiB); no access log; no MD5 unless
`--md5` (then ETags are the MD5 of the body, as S3's; otherwise random hex).
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import os
import re
import secrets
import signal
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from urllib.parse import parse_qsl, unquote
from xml.sax.saxutils import escape, unescape

from gateway.s3.chunked import AwsChunkedDecoder
from gateway.bench.wire import MAX_HEAD_BYTES, REASONS, SCRATCH_BYTES, ProtocolError, content_length, parse_head, \
    render_head

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_PART = re.compile(rb"<PartNumber>\s*(\d+)\s*</PartNumber>")
_KEY = re.compile(rb"<Key>([^<]*)</Key>")
_SEND_BYTES = 4 << 20
_READ_BYTES = 1 << 20
_MAX_SMALL_BODY = 4 << 20
DEFAULT_MEMORY_BUDGET_BYTES = 4 << 30
_KEPT_HEADERS = ("content-type", "content-encoding", "content-disposition", "content-language", "cache-control",
                 "expires")


# --- storage ---------------------------------------------------------------------------------------------------
@dataclass
class _Piece:
    """One stored run of bytes: in memory (`data`) or in a file (`path`)."""
    size: int
    data: bytearray | None = None
    path: str | None = None

    def read(self, start: int, end: int) -> Iterator[memoryview | bytes]:
        if self.data is not None:
            view = memoryview(self.data)
            for position in range(start, end, _SEND_BYTES):
                yield view[position:min(end, position + _SEND_BYTES)]
            return
        assert self.path is not None
        with open(self.path, "rb") as source:
            source.seek(start)
            remaining = end - start
            while remaining:
                chunk = source.read(min(_READ_BYTES, remaining))
                if not chunk:
                    raise OSError("stored file shorter than recorded")
                remaining -= len(chunk)
                yield chunk


@dataclass
class _Object:
    pieces: list[_Piece]
    headers: dict[str, str]

    @property
    def size(self) -> int:
        return sum(p.size for p in self.pieces)

    def read(self, start: int, end: int) -> Iterator[memoryview | bytes]:
        """Bytes [start, end) across pieces."""
        offset = 0
        for piece in self.pieces:
            lo, hi = max(start, offset), min(end, offset + piece.size)
            if lo < hi:
                yield from piece.read(lo - offset, hi - offset)
            offset += piece.size
            if offset >= end:
                return


@dataclass
class _Upload:
    name: str
    headers: dict[str, str]
    parts: dict[int, tuple[_Piece, str]] = field(default_factory=dict)


class _BufferPool:
    """Large buffers of deleted objects, kept for the next object of the same size.

    A fresh buffer costs a page fault per 4 KiB page on first touch — more than the copy into it, and several
    times more in a VM — and benchmarks store objects of the same few sizes over and over. A buffer is only
    pooled when nothing else refers to it (no memoryview still held by a transport that is sending it).
    """
    MIN_BYTES = 1 << 20

    def __init__(self) -> None:
        self._free: dict[int, list[bytearray]] = {}
        self.bytes = 0

    def take(self, size: int) -> bytearray:
        free = self._free.get(size)
        if free:
            self.bytes -= size
            return free.pop()
        return bytearray(size)

    def give(self, buffer: bytearray) -> None:
        # References: the caller's variable, this argument and getrefcount's. More: a view is still in use.
        if len(buffer) >= self.MIN_BYTES and sys.getrefcount(buffer) <= 3:
            self._free.setdefault(len(buffer), []).append(buffer)
            self.bytes += len(buffer)

    def shrink(self, need: int) -> None:
        """Drop pooled buffers, largest first, until `need` bytes are freed or the pool is empty."""
        for size in sorted(self._free, reverse=True):
            while self._free[size] and need > 0:
                self._free[size].pop()
                self.bytes -= size
                need -= size


@dataclass
class Request:
    method: str
    bucket: str
    key: str
    query: dict[str, str]
    headers: dict[str, str]
    length: int


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | Iterable[bytes | memoryview] = b""
    length: int | None = None       # for an iterable body (or HEAD): the Content-Length to announce


class _Body:
    """Where a request body goes. `direct` bodies are received by the kernel into `direct` (the connection
    counts `received`); others arrive in a scratch buffer and are handed to feed()."""
    direct: memoryview | None = None
    received = 0

    def feed(self, view: memoryview) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        pass

    def discard(self) -> None:
        pass


class _Small(_Body):
    def __init__(self) -> None:
        self.data = bytearray()

    def feed(self, view: memoryview) -> None:
        if len(self.data) + len(view) <= _MAX_SMALL_BODY:
            self.data += view


class _Discarded(_Body):
    """A body counted and dropped: benchmarks that only need one stored copy (x-amz-meta-bench-discard)."""

    def feed(self, view: memoryview) -> None:
        self.received += len(view)


DISCARD_HEADER = "x-amz-meta-bench-discard"


class _Stored(_Body):
    """An object (or part) body: into memory (direct unless aws-chunked) or a file; digest if asked."""

    def __init__(self, sink: Sink, request: Request) -> None:
        self._sink = sink
        sha = request.headers.get("x-amz-content-sha256", "")
        self._decoder = None
        if sha.startswith("STREAMING-") or "aws-chunked" in request.headers.get("content-encoding", ""):
            # Decode aws-chunked framing as S3 does (signatures are not checked: this is no security boundary).
            self._decoder = AwsChunkedDecoder(None, expect_trailer=sha.endswith("-TRAILER"), decoded_length=None)
            declared = request.headers.get("x-amz-decoded-content-length", "")
            self.length: int | None = int(declared) if declared.isdigit() else None
        else:
            self.length = request.length
        self._md5 = hashlib.md5(usedforsecurity=False) if sink.md5 else None
        self.received = 0
        self.data = sink.allocate(self.length) if self.length is not None else None
        self._file = None
        self.path: str | None = None
        if self.data is None:
            self.path = sink.new_path()
            self._file = open(self.path, "wb", buffering=0)
        elif self._decoder is None and self._md5 is None:
            self.direct = memoryview(self.data)

    def feed(self, view: memoryview) -> None:
        for piece in (self._decoder.feed(view) if self._decoder is not None else (view,)):
            self._store(piece)

    def _store(self, piece: memoryview) -> None:
        n = len(piece)
        if self._md5 is not None:
            self._md5.update(piece)
        if self.data is not None:
            if self.received + n > len(self.data):
                raise ProtocolError("body longer than declared")
            self.data[self.received:self.received + n] = piece
        else:
            assert self._file is not None
            self._file.write(piece)
        self.received += n

    def finish(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._decoder is not None:
            self._decoder.finish()
        if self.length is not None and self.received != self.length:
            raise ProtocolError("body length differs from the declared one")

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._sink.release([self.piece()])
        self.data = None

    def piece(self) -> _Piece:
        if self.data is not None:
            return _Piece(len(self.data), data=self.data)
        return _Piece(self.received, path=self.path)

    def etag(self) -> str:
        return f'"{self._md5.hexdigest() if self._md5 is not None else secrets.token_hex(16)}"'


class Sink:
    def __init__(self, directory: str, memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES,
                 md5: bool = False) -> None:
        self.directory = directory
        self.memory_budget_bytes = memory_budget_bytes
        self.md5 = md5
        self.objects: dict[str, _Object] = {}
        self.uploads: dict[str, _Upload] = {}
        self._in_memory = 0
        self._pool = _BufferPool()
        self._files = itertools.count()

    # --- storage -----------------------------------------------------------------------------------------------
    def allocate(self, length: int) -> bytearray | None:
        """A buffer for a body of `length` bytes, or None when the memory budget says: use a file."""
        if self._in_memory + length > self.memory_budget_bytes:
            return None
        overflow = self._in_memory + self._pool.bytes + length - self.memory_budget_bytes
        if overflow > 0:
            self._pool.shrink(overflow)
        self._in_memory += length
        return self._pool.take(length)

    def new_path(self) -> str:
        return os.path.join(self.directory, f"{next(self._files):012d}")

    def release(self, pieces: list[_Piece]) -> None:
        for piece in pieces:
            if piece.data is not None:
                self._in_memory -= piece.size
                data, piece.data = piece.data, None
                self._pool.give(data)
                del data
            elif piece.path is not None:
                try:
                    os.unlink(piece.path)
                except FileNotFoundError:
                    pass

    # --- requests ----------------------------------------------------------------------------------------------
    def body_for(self, request: Request) -> _Body:
        if request.method == "PUT" and request.headers.get(DISCARD_HEADER):
            return _Discarded()
        if request.key and (request.method == "PUT" and ("uploadId" not in request.query or
                                                         request.query.get("partNumber"))):
            return _Stored(self, request)
        return _Small()

    def handle(self, request: Request, body: _Body) -> Reply:
        bucket, key, query, method = request.bucket, request.key, request.query, request.method
        if not key:
            # Bucket-level calls: creating, heading and deleting a bucket always succeed; listings are minimal.
            if method in ("PUT", "HEAD", "DELETE"):
                return Reply(204 if method == "DELETE" else 200)
            if method == "GET":
                return self._list(bucket, query.get("prefix", ""))
            if method == "POST" and "delete" in query and isinstance(body, _Small):
                return self._delete_many(bucket, body.data)
            return _error(501, "NotImplemented")
        name = f"{bucket}/{key}"
        if method == "POST" and "uploads" in query:
            return self._create_upload(name, bucket, key, request)
        if "uploadId" in query:
            upload = self.uploads.get(query["uploadId"])
            if upload is None or upload.name != name:
                if isinstance(body, _Stored):
                    body.discard()
                return _error(404, "NoSuchUpload")
            if method == "PUT" and "x-amz-copy-source" in request.headers:
                if isinstance(body, _Stored):
                    body.discard()
                return self._copy_part(upload, request)
            if method == "PUT" and isinstance(body, _Stored):
                return self._upload_part(upload, request, body)
            if method == "POST" and isinstance(body, _Small):
                return self._complete_upload(query["uploadId"], upload, body.data)
            if method == "DELETE":
                self.release([piece for piece, _ in self.uploads.pop(query["uploadId"]).parts.values()])
                return Reply(204)
            return _error(501, "NotImplemented")
        if method == "PUT" and isinstance(body, _Stored):
            return self._put(request, name, body)
        if method == "PUT" and isinstance(body, _Discarded):
            return Reply(200, [("ETag", f'"{secrets.token_hex(16)}"')])
        if method in ("GET", "HEAD"):
            stored = self.objects.get(name)
            if stored is None:
                return _error(404, "NoSuchKey")
            return self._get(request, stored)
        if method == "DELETE":
            stored = self.objects.pop(name, None)
            if stored is not None:
                self.release(stored.pieces)
            return Reply(204)
        return _error(501, "NotImplemented")

    def _put(self, request: Request, name: str, body: _Stored) -> Reply:
        headers = _object_headers(request)
        headers["ETag"] = body.etag()
        previous = self.objects.get(name)
        self.objects[name] = _Object([body.piece()], headers)
        if previous is not None:
            self.release(previous.pieces)
        return Reply(200, [("ETag", headers["ETag"])])

    def _list(self, bucket: str, prefix: str) -> Reply:
        """ListBuckets (no bucket) or a ListObjectsV2 page of up to 1,000 keys (no delimiter, no continuation)."""
        if not bucket:
            names = sorted({name.partition("/")[0] for name in self.objects})
            inner = "".join(f"<Bucket><Name>{escape(n)}</Name></Bucket>" for n in names)
            return _xml("ListAllMyBucketsResult", f"<Buckets>{inner}</Buckets>")
        keys = sorted(name.partition("/")[2] for name in self.objects
                      if name.startswith(bucket + "/") and name.partition("/")[2].startswith(prefix))
        truncated = len(keys) > 1000
        entries = "".join(
            f"<Contents><Key>{escape(k)}</Key><Size>{self.objects[f'{bucket}/{k}'].size}</Size>"
            f"<ETag>{escape(self.objects[f'{bucket}/{k}'].headers['ETag'])}</ETag></Contents>" for k in keys[:1000])
        return _xml("ListBucketResult", f"<Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix>"
                                        f"<KeyCount>{min(len(keys), 1000)}</KeyCount><MaxKeys>1000</MaxKeys>"
                                        f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>{entries}")

    def _create_upload(self, name: str, bucket: str, key: str, request: Request) -> Reply:
        upload_id = secrets.token_hex(16)
        self.uploads[upload_id] = _Upload(name, _object_headers(request))
        return _xml("InitiateMultipartUploadResult", f"<Bucket>{escape(bucket)}</Bucket><Key>{escape(key)}</Key>"
                                                     f"<UploadId>{upload_id}</UploadId>")

    def _upload_part(self, upload: _Upload, request: Request, body: _Stored) -> Reply:
        number = request.query.get("partNumber", "")
        if not number.isdigit() or not 1 <= int(number) <= 10000:
            body.discard()
            return _error(400, "InvalidArgument")
        etag = body.etag()
        previous = upload.parts.get(int(number))
        upload.parts[int(number)] = (body.piece(), etag)
        if previous is not None:
            self.release([previous[0]])
        return Reply(200, [("ETag", etag)])

    def _copy_part(self, upload: _Upload, request: Request) -> Reply:
        """UploadPartCopy of a whole object or a byte range of it (the gateway copies its stash of a last part)."""
        number = request.query.get("partNumber", "")
        source = self.objects.get(unquote(request.headers["x-amz-copy-source"]).lstrip("/").partition("?")[0])
        if source is None or not number.isdigit():
            return _error(404, "NoSuchKey")
        start, end = 0, source.size
        match = _RANGE.match(request.headers.get("x-amz-copy-source-range", ""))
        if match and match.group(1) and match.group(2):
            start, end = int(match.group(1)), int(match.group(2)) + 1
        data = self.allocate(end - start)
        if data is None:
            return _error(507, "InsufficientStorage")
        offset = 0
        for view in source.read(start, end):
            data[offset:offset + len(view)] = view
            offset += len(view)
        etag = f'"{secrets.token_hex(16)}"'
        previous = upload.parts.get(int(number))
        upload.parts[int(number)] = (_Piece(len(data), data=data), etag)
        if previous is not None:
            self.release([previous[0]])
        return _xml("CopyPartResult", f"<ETag>{escape(etag)}</ETag>")

    def _delete_many(self, bucket: str, xml: bytes | bytearray) -> Reply:
        for key in _KEY.findall(xml):
            stored = self.objects.pop(f"{bucket}/{unescape(key.decode())}", None)
            if stored is not None:
                self.release(stored.pieces)
        return _xml("DeleteResult", "")

    def _complete_upload(self, upload_id: str, upload: _Upload, xml: bytes | bytearray) -> Reply:
        numbers = [int(n) for n in _PART.findall(xml)]
        if not numbers or numbers != sorted(set(numbers)) or any(n not in upload.parts for n in numbers):
            return _error(400, "InvalidPart")
        del self.uploads[upload_id]
        pieces = [upload.parts.pop(n)[0] for n in numbers]
        self.release([piece for piece, _ in upload.parts.values()])  # uploaded but not listed: discarded
        etag = f'"{secrets.token_hex(16)}-{len(numbers)}"'
        headers = dict(upload.headers)
        headers["ETag"] = etag
        previous = self.objects.get(upload.name)
        self.objects[upload.name] = _Object(pieces, headers)
        if previous is not None:
            self.release(previous.pieces)
        bucket, _, key = upload.name.partition("/")
        return _xml("CompleteMultipartUploadResult", f"<Bucket>{escape(bucket)}</Bucket><Key>{escape(key)}</Key>"
                                                     f"<ETag>{escape(etag)}</ETag>")

    def _get(self, request: Request, stored: _Object) -> Reply:
        size = stored.size
        start, end, status = 0, size - 1, 200
        headers = dict(stored.headers)
        headers["Accept-Ranges"] = "bytes"
        match = _RANGE.match(request.headers.get("range", ""))
        if match and match.group(1):
            start = int(match.group(1))
            end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            status = 206
            if start >= size or end < start:
                return _error(416, "InvalidRange")
        elif match and match.group(2):
            if size == 0 or int(match.group(2)) == 0:
                return _error(416, "InvalidRange")
            start, status = max(0, size - int(match.group(2))), 206
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        body = stored.read(start, end + 1) if request.method == "GET" else ()
        return Reply(status, list(headers.items()), body, length=end - start + 1)


def _object_headers(request: Request) -> dict[str, str]:
    headers = {}
    for name, value in request.headers.items():
        if name.startswith("x-amz-meta-") or name in _KEPT_HEADERS:
            if name == "content-encoding" and "aws-chunked" in value:
                continue
            headers[name] = value
    headers["Last-Modified"] = formatdate(usegmt=True)
    return headers


def _error(status: int, code: str, message: str = "") -> Reply:
    detail = f"<Message>{escape(message)}</Message>" if message else ""
    return Reply(status, [("Content-Type", "application/xml")],
                 f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>{detail}</Error>'.encode())


def _xml(root: str, inner: str) -> Reply:
    return Reply(200, [("Content-Type", "application/xml")],
                 f'<?xml version="1.0" encoding="UTF-8"?><{root}>{inner}</{root}>'.encode())


# --- HTTP/1.1 ----------------------------------------------------------------------------------------------------
class SinkConnection(asyncio.BufferedProtocol):
    """One client connection: read a request head, receive its body, answer, repeat (keep-alive)."""

    def __init__(self, sink: Sink, connections: set) -> None:
        self._sink = sink
        self._connections = connections
        self._transport: asyncio.Transport | None = None
        self._head = bytearray(MAX_HEAD_BYTES)
        self._head_view = memoryview(self._head)
        self._filled = 0
        self._scratch: memoryview | None = None
        self._state = "head"  # head | body | reply
        self._request: Request | None = None
        self._body: _Body | None = None
        self._remaining = 0
        self._close_after = False
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._task: asyncio.Task | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        self._can_write.set()
        if self._state == "body" and self._body is not None:
            self._body.discard()
            self._body = None
        if self._task is not None:
            self._task.cancel()

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._state == "body":
            body = self._body
            assert body is not None and self._request is not None
            if body.direct is not None:
                offset = self._request.length - self._remaining
                return body.direct[offset:]
            if self._scratch is None:
                self._scratch = memoryview(bytearray(SCRATCH_BYTES))
            return self._scratch[:min(SCRATCH_BYTES, self._remaining)]
        if self._filled >= MAX_HEAD_BYTES:
            self._fail(431)
            return memoryview(bytearray(SCRATCH_BYTES))  # the connection is closing; bytes are dropped
        return self._head_view[self._filled:]

    def buffer_updated(self, nbytes: int) -> None:
        try:
            if self._state == "body":
                body = self._body
                assert body is not None
                if body.direct is None:
                    assert self._scratch is not None
                    body.feed(self._scratch[:nbytes])
                else:
                    body.received += nbytes
                self._remaining -= nbytes
                if not self._remaining:
                    self._dispatch()
            else:
                self._filled += nbytes
                if self._state == "head":
                    self._try_head()
        except Exception as exc:  # noqa: BLE001 - a bad request ends this connection, never the sink
            self._fail(400, str(exc))

    def eof_received(self) -> bool:
        return False

    def _fail(self, status: int, detail: str = "") -> None:
        if self._body is not None:
            self._body.discard()
            self._body = None
        if self._transport is not None and not self._transport.is_closing():
            reply = _error(status, "BadRequest" if status == 400 else REASONS.get(status, "Error").replace(" ", ""),
                           detail[:200])
            body = bytes(reply.body)  # type: ignore[arg-type]
            self._transport.write(_render(reply, len(body), close=True) + body)
            self._transport.close()
        self._state = "closed"

    def _try_head(self) -> None:
        end = self._head.find(b"\r\n\r\n", 0, self._filled)
        if end < 0:
            return
        start, fields = parse_head(self._head_view[:end])
        parts = start.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise ProtocolError("bad request line")
        method, target, version = parts
        headers = {name: value for name, value in fields}
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._fail(411)
            return
        length = content_length(fields) or 0
        path, _, query = target.partition("?")
        bucket, _, key = unquote(path.lstrip("/")).partition("/")
        self._request = Request(method.upper(), bucket, key, dict(parse_qsl(query, keep_blank_values=True)),
                                headers, length)
        connection = headers.get("connection", "").lower()
        self._close_after = connection == "close" or (version == "HTTP/1.0" and connection != "keep-alive")
        leftover = bytes(self._head_view[end + 4:self._filled])
        self._filled = 0
        if headers.get("expect", "").lower() == "100-continue" and self._transport is not None:
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._body = self._sink.body_for(self._request)
        self._remaining = length
        self._state = "body"
        if leftover:
            take = min(len(leftover), length)
            if take:
                if self._body.direct is not None:
                    self._body.direct[:take] = leftover[:take]
                    self._body.received += take
                else:
                    self._body.feed(memoryview(leftover)[:take])
                self._remaining -= take
            rest = leftover[take:]
            self._head[:len(rest)] = rest  # the start of a pipelined next request
            self._filled = len(rest)
        if not self._remaining:
            self._dispatch()

    def _dispatch(self) -> None:
        request, body = self._request, self._body
        assert request is not None and body is not None
        self._state = "reply"
        self._body = None
        try:
            body.finish()
        except Exception as exc:  # noqa: BLE001 - reported as a 400
            body.discard()
            self._fail(400, str(exc))
            return
        reply = self._sink.handle(request, body)
        self._task = asyncio.get_running_loop().create_task(self._send(request, reply))

    async def _send(self, request: Request, reply: Reply) -> None:
        transport = self._transport
        assert transport is not None
        if isinstance(reply.body, (bytes, bytearray)):
            length = len(reply.body) if reply.length is None else reply.length
            transport.write(_render(reply, length, self._close_after) +
                            (bytes(reply.body) if request.method != "HEAD" else b""))
        else:
            transport.write(_render(reply, reply.length or 0, self._close_after))
            for chunk in reply.body:
                if transport.is_closing():
                    return
                transport.write(chunk)
                if not self._can_write.is_set():
                    await self._can_write.wait()
        del reply
        self._task = None
        if self._close_after:
            transport.close()
            return
        self._state = "head"
        if self._filled:
            try:
                self._try_head()
            except Exception as exc:  # noqa: BLE001
                self._fail(400, str(exc))


def _render(reply: Reply, length: int, close: bool) -> bytes:
    headers = [*reply.headers, ("Content-Length", str(length))]
    if close:
        headers.append(("Connection", "close"))
    return render_head(f"HTTP/1.1 {reply.status} {REASONS.get(reply.status, 'Status')}", headers)


async def serve(sink: Sink, port: int, stop: asyncio.Event, on_ready: Callable[[], None] | None = None) -> None:
    loop = asyncio.get_running_loop()
    connections: set[SinkConnection] = set()
    server = await loop.create_server(lambda: SinkConnection(sink, connections), "127.0.0.1", port, backlog=1024)
    if on_ready is not None:
        on_ready()
    try:
        await stop.wait()
    finally:
        server.close()
        for connection in list(connections):
            if connection._transport is not None:
                connection._transport.abort()
        await server.wait_closed()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--memory-budget-mib", type=int, default=DEFAULT_MEMORY_BUDGET_BYTES >> 20,
                        help="bodies are kept in memory up to this total, in files beyond it (default 4096)")
    parser.add_argument("--md5", action="store_true", help="ETags are the body's MD5 (costs CPU), as S3's")
    parser.add_argument("--keep-heap", action="store_true",
                        help="high glibc mmap/trim thresholds: fewer page faults (benchmarks pass this)")
    args = parser.parse_args(argv)
    import uvloop

    if args.keep_heap:
        from gateway.bench.tuning import keep_heap_memory

        keep_heap_memory()

    async def run(directory: str) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(Sink(directory, args.memory_budget_mib << 20, args.md5), args.port, stop)

    with tempfile.TemporaryDirectory(prefix="envelope-sink-") as directory:
        uvloop.run(run(directory))


if __name__ == "__main__":
    main()
