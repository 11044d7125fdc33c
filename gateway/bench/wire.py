"""Minimal HTTP/1.1 for the benchmark instruments (the sink and the load client). Never used by the gateway.

The instruments share one CPU core with each other, so every microsecond they spend per byte is taken from
what they can measure. aiohttp moves a body through several Python-level copies (socket read → bytes →
parser → StreamReader); these protocols receive straight into the caller's buffer (`asyncio.BufferedProtocol`,
so uvloop's recv writes into the object's bytearray, or into one reused scratch buffer) and send memoryviews
that uvloop writes without copying. What they implement is what the benchmark needs: Content-Length bodies
(requests), Content-Length / chunked / until-close bodies (responses), keep-alive, `Expect: 100-continue`.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

MAX_HEAD_BYTES = 64 * 1024
SCRATCH_BYTES = 1 << 20
REASONS = {100: "Continue", 200: "OK", 204: "No Content", 206: "Partial Content", 304: "Not Modified",
           400: "Bad Request", 403: "Forbidden", 404: "Not Found", 411: "Length Required",
           412: "Precondition Failed", 413: "Payload Too Large", 416: "Range Not Satisfiable",
           431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
           503: "Service Unavailable"}


class ProtocolError(Exception):
    """The peer sent something this minimal HTTP/1.1 does not accept."""


def parse_head(head: bytes | bytearray | memoryview) -> tuple[str, list[tuple[str, str]]]:
    """The start line and the header fields (names lowercased, values stripped) of a message head, without the
    final blank line. Obsolete line folding is refused."""
    text = bytes(head).decode("latin-1")
    lines = text.split("\r\n")
    start = lines[0]
    fields: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t":
            raise ProtocolError("obsolete header line folding")
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ProtocolError(f"malformed header line {line[:40]!r}")
        fields.append((name.lower(), value.strip()))
    return start, fields


def content_length(fields: Iterable[tuple[str, str]]) -> int | None:
    values = {v for k, v in fields if k == "content-length"}
    if not values:
        return None
    if len(values) != 1:
        raise ProtocolError("conflicting Content-Length values")
    value = values.pop()
    if not value.isdigit():
        raise ProtocolError("Content-Length is not a number")
    return int(value)


def render_head(start: str, headers: Iterable[tuple[str, str]]) -> bytes:
    lines = [start]
    for name, value in headers:
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError("CR/LF in a header")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class _ChunkedDecoder:
    """Transfer-Encoding: chunked (responses only): payload pieces to `deliver`; `done` after the last chunk."""

    def __init__(self, deliver: Callable[[memoryview], None]) -> None:
        self._deliver = deliver
        self._line = bytearray()
        self._remaining = 0
        self._state = "size"  # size | data | data-crlf | trailer
        self.done = False

    def feed(self, view: memoryview) -> int:
        """Consume bytes; return how many were used (fewer than given once the body ended)."""
        pos, end = 0, len(view)
        while pos < end and not self.done:
            if self._state == "data":
                n = min(self._remaining, end - pos)
                self._deliver(view[pos:pos + n])
                pos += n
                self._remaining -= n
                if not self._remaining:
                    self._state = "data-crlf"
                continue
            newline = bytes(view[pos:end]).find(b"\n")
            if newline < 0:
                self._line += view[pos:end]
                pos = end
                if len(self._line) > 4096:
                    raise ProtocolError("chunk line too long")
                break
            self._line += view[pos:pos + newline]
            pos += newline + 1
            line = bytes(self._line).rstrip(b"\r")
            self._line.clear()
            if self._state == "size":
                size_text = line.split(b";", 1)[0].strip()
                try:
                    self._remaining = int(size_text, 16)
                except ValueError:
                    raise ProtocolError("bad chunk size") from None
                self._state = "data" if self._remaining else "trailer"
            elif self._state == "data-crlf":
                if line:
                    raise ProtocolError("chunk data not followed by CRLF")
                self._state = "size"
            elif not line:  # trailer section ends with an empty line
                self.done = True
        return pos


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    ttfb: float                       # seconds from send start to the first body byte (or the head, if none)
    body_bytes: int = 0
    error_body: bytes = b""           # the first 64 KiB of a body nobody consumed (error documents)
    extra: dict = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None


class ClientConnection(asyncio.BufferedProtocol):
    """One keep-alive HTTP/1.1 connection of the load client. One request at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self._head = bytearray(MAX_HEAD_BYTES)
        self._head_view = memoryview(self._head)
        self._filled = 0
        self._scratch = memoryview(bytearray(SCRATCH_BYTES))
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._state = "idle"     # idle | head | body | done
        self._future: asyncio.Future | None = None
        self._on_body: Callable[[memoryview], None] | None = None
        self._remaining: int | None = None
        self._chunked: _ChunkedDecoder | None = None
        self._response: Response | None = None
        self._started = 0.0
        self._error_body = bytearray()
        self._head_request = False
        self._first_body = True
        self.reusable = True
        self.closed = False

    # --- asyncio callbacks -------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        self._can_write.set()
        if self._future is not None and not self._future.done():
            if self._state == "body" and self._remaining is None and self._chunked is None:
                self._finish()  # a body delimited by the connection's end
            else:
                self._future.set_exception(ConnectionResetError("connection closed before the response ended"))

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._state == "body":
            if self._remaining is not None:
                return self._scratch[:max(1, min(SCRATCH_BYTES, self._remaining))]
            return self._scratch
        if self._filled >= MAX_HEAD_BYTES:
            raise ProtocolError("response head too large")
        return self._head_view[self._filled:]

    def buffer_updated(self, nbytes: int) -> None:
        try:
            if self._state == "body":
                self._body(self._scratch[:nbytes])
            elif self._state == "head":
                self._filled += nbytes
                self._try_head()
            else:
                self.reusable = False  # bytes nobody asked for
        except ProtocolError as exc:
            self.reusable = False
            if self._future is not None and not self._future.done():
                self._future.set_exception(exc)
            if self.transport is not None:
                self.transport.abort()

    def eof_received(self) -> bool:
        return False

    # --- response parsing --------------------------------------------------------------------------------------
    def _try_head(self) -> None:
        end = self._head.find(b"\r\n\r\n", 0, self._filled)
        if end < 0:
            return
        start, fields = parse_head(self._head_view[:end])
        parts = start.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"bad status line {start[:60]!r}")
        status = int(parts[1])
        leftover = self._head_view[end + 4:self._filled]
        if 100 <= status < 200:
            # An interim response (100 Continue): drop it and wait for the real one.
            rest = bytes(leftover)
            self._head[:len(rest)] = rest
            self._filled = len(rest)
            self._try_head()
            return
        self._response = Response(status, fields, time.perf_counter() - self._started)
        if any(k == "connection" and v.lower() == "close" for k, v in fields):
            self.reusable = False
        length = content_length(fields)
        chunked = any(k == "transfer-encoding" and "chunked" in v.lower() for k, v in fields)
        self._filled = 0
        if self._head_request or status in (204, 304) or (length == 0 and not chunked):
            if len(leftover):
                self.reusable = False
            self._finish()
            return
        self._state = "body"
        self._first_body = True
        if chunked:
            self._chunked = _ChunkedDecoder(self._deliver)
            self._remaining = None
        else:
            self._remaining = length  # None: until the connection closes
            if length is None:
                self.reusable = False
        if len(leftover):
            self._body(leftover)

    def _deliver(self, view: memoryview) -> None:
        response = self._response
        assert response is not None
        if self._first_body:
            self._first_body = False
            response.ttfb = time.perf_counter() - self._started
        response.body_bytes += len(view)
        if self._on_body is not None and 200 <= response.status < 300:
            self._on_body(view)
        elif len(self._error_body) < 65536:
            self._error_body += view[:65536 - len(self._error_body)]

    def _body(self, view: memoryview) -> None:
        if self._chunked is not None:
            used = self._chunked.feed(view)
            if self._chunked.done:
                if used < len(view):
                    self.reusable = False
                self._finish()
            return
        if self._remaining is None:
            self._deliver(view)
            return
        n = min(len(view), self._remaining)
        if n < len(view):
            self.reusable = False
        self._deliver(view[:n])
        self._remaining -= n
        if not self._remaining:
            self._finish()

    def _finish(self) -> None:
        self._state = "done"
        response = self._response
        if response is not None:
            response.error_body = bytes(self._error_body)
        if self._future is not None and not self._future.done():
            self._future.set_result(response)

    # --- the one request ---------------------------------------------------------------------------------------
    async def request(self, head: bytes, body: Iterable[bytes | bytearray | memoryview] | bytes | None,
                      on_body: Callable[[memoryview], None] | None, head_request: bool = False) -> Response:
        """Send `head` and `body` (pieces written as they come, with flow control), return the response after
        its body went through `on_body` (2xx) or was kept as `error_body`."""
        if self.closed or self.transport is None:
            raise ConnectionResetError("connection closed")
        self._future = self._loop.create_future()
        # If the caller gave up (timeout), a later connection error must not be reported as never retrieved.
        self._future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._on_body = on_body
        self._state = "head"
        self._filled = 0
        self._chunked = None
        self._remaining = 0
        self._response = None
        self._error_body = bytearray()
        self._head_request = head_request
        self._started = time.perf_counter()
        transport = self.transport
        transport.write(head)
        if body is not None:
            pieces = (body,) if isinstance(body, (bytes, bytearray, memoryview)) else body
            for piece in pieces:
                if self._future.done():
                    # The server answered before taking the whole body: this connection is spent.
                    self.reusable = False
                    break
                transport.write(piece)
                if not self._can_write.is_set():
                    await self._can_write.wait()
                if self.closed:
                    break
        return await self._future

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class ConnectionPool:
    """Keep-alive connections to one host:port, at most `limit` at once."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host = host
        self.port = port
        self._idle: list[ClientConnection] = []
        self._slots = asyncio.Semaphore(limit)

    async def acquire(self) -> ClientConnection:
        await self._slots.acquire()
        try:
            while self._idle:
                connection = self._idle.pop()
                if not connection.closed:
                    return connection
            loop = asyncio.get_running_loop()
            _, protocol = await loop.create_connection(lambda: ClientConnection(loop), self.host, self.port)
            return protocol
        except BaseException:
            self._slots.release()
            raise

    def release(self, connection: ClientConnection, reusable: bool) -> None:
        if reusable and connection.reusable and not connection.closed and connection._state == "done":
            connection._state = "idle"
            self._idle.append(connection)
        else:
            connection.abort()
        self._slots.release()

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
