"""A TCP proxy for the tests that injects faults between the gateway and what it depends on (the store, KMS).

It runs in its own thread with its own event loop, listens on 127.0.0.1 on a free port, and forwards every
connection to one upstream address. A test switches its mode at any time from its own thread:

    with FaultProxy("127.0.0.1", moto_port) as proxy:
        ...point the gateway at proxy.url...
        proxy.reset_after(1000, UP)      # cut every connection after 1,000 more request bytes
        proxy.stall_after(0, DOWN)       # stop forwarding responses, hold the connections open
        proxy.drip(10_000, DOWN)         # forward responses at 10 kB/s
        proxy.refuse()                   # new connections are reset at once
        proxy.answer_next(3, SLOW_DOWN)  # the next 3 HTTP requests get a canned 503 SlowDown
        proxy.pass_through()

A byte fault counts from the moment it is set, per connection and direction: `reset_after(N, UP)` lets each
connection (open or new) forward N more request bytes, then resets it. A stalled stream resumes under whatever
mode replaces the stall. Canned answers are given at request boundaries: the proxy follows HTTP/1.1 request
framing (Content-Length) on the request stream, swallows the request it answers and closes that connection
after the answer (`Connection: close`), so no response of the upstream can interleave with it.
"""
from __future__ import annotations

import asyncio
import collections
import socket
import struct
import threading
from dataclasses import dataclass, field

UP = "up"  # client -> upstream: requests
DOWN = "down"  # upstream -> client: responses
_READ_SIZE = 64 * 1024
_MAX_HEAD = 64 * 1024
_DRIP_TICK_SECONDS = 0.05
_CONNECT_TIMEOUT_SECONDS = 10.0
_EOF = "eof"


@dataclass(frozen=True)
class Canned:
    """An HTTP response the proxy gives instead of forwarding the request."""
    status: int
    reason: str
    body: bytes
    content_type: str

    def encode(self) -> bytes:
        head = (f"HTTP/1.1 {self.status} {self.reason}\r\nContent-Type: {self.content_type}\r\n"
                f"Content-Length: {len(self.body)}\r\nConnection: close\r\n\r\n")
        return head.encode("ascii") + self.body


def _s3_error(status: int, reason: str, code: str, message: str) -> Canned:
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            f"<RequestId>FAULTPROXY</RequestId></Error>").encode()
    return Canned(status, reason, body, "application/xml")


SLOW_DOWN = _s3_error(503, "Slow Down", "SlowDown", "Please reduce your request rate.")
INTERNAL_ERROR = _s3_error(500, "Internal Server Error", "InternalError",
                           "We encountered an internal error. Please try again.")
KMS_INTERNAL_FAILURE = Canned(500, "Internal Server Error",
                              b'{"__type":"KMSInternalException","message":"injected internal failure"}',
                              "application/x-amz-json-1.1")


@dataclass(frozen=True)
class _Mode:
    kind: str  # "pass", "reset", "stall", "drip", "refuse"
    direction: str | None = None
    after: int = 0
    rate: int = 0
    generation: int = 0


@dataclass
class Counters:
    connections: int = 0  # accepted, all time
    active: int = 0  # open now
    refused: int = 0
    resets: int = 0  # connections cut by a reset fault
    canned: int = 0  # requests answered with a canned response
    bytes: dict[str, int] = field(default_factory=lambda: {UP: 0, DOWN: 0})  # forwarded


class _RequestFramer:
    """Follows request boundaries on the request stream: yields ("head", bytes) for each complete request head and
    ("data", bytes) for everything else. Bytes that do not start like an HTTP request (a method in capitals), a
    head over 64 KiB, or a chunked body switch it to opaque: all later bytes are "data"."""

    def __init__(self) -> None:
        self._head = bytearray()
        self.body_left = 0
        self.opaque = False

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        out: list[tuple[str, bytes]] = []
        view = memoryview(data)
        while view:
            if self.opaque:
                out.append(("data", bytes(view)))
                break
            if self.body_left:
                take = min(self.body_left, len(view))
                out.append(("data", bytes(view[:take])))
                self.body_left -= take
                view = view[take:]
                continue
            if not self._head and not (65 <= view[0] <= 90):
                self.opaque = True
                continue
            self._head += view
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                if len(self._head) > _MAX_HEAD:
                    self.opaque, rest, self._head = True, bytes(self._head), bytearray()
                    out.append(("data", rest))
                break
            head, rest = bytes(self._head[:end + 4]), bytes(self._head[end + 4:])
            self._head = bytearray()
            out.append(("head", head))
            self.body_left, chunked = _body_framing(head)
            if chunked:
                self.opaque = True
            view = memoryview(rest)
        return out


def _body_framing(head: bytes) -> tuple[int, bool]:
    length, chunked = 0, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length" and value.strip().isdigit():
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    return length, chunked


def _expects_continue(head: bytes) -> bool:
    return any(line.lower().startswith(b"expect:") and b"100-continue" in line.lower()
               for line in head.split(b"\r\n"))


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0): the peer sees 'connection reset', not an orderly end."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


class _Connection:
    def __init__(self, proxy: "FaultProxy", client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                 upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.proxy = proxy
        self.client_reader, self.client_writer = client
        self.upstream_reader, self.upstream_writer = upstream
        self.sent = {UP: 0, DOWN: 0}
        # Per direction: the mode generation last seen and the byte count when it was first seen.
        self.seen = {UP: (-1, 0), DOWN: (-1, 0)}
        self.closed = False

    def close(self, reset: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        for writer in (self.client_writer, self.upstream_writer):
            if reset:
                _abort(writer)
            else:
                writer.close()

    async def run(self) -> None:
        pumps = [asyncio.create_task(self._requests()), asyncio.create_task(self._responses())]
        pending = set(pumps)
        try:
            # An orderly end of one direction (a half-close, passed on) leaves the other running; anything else
            # (a fault, a canned answer, an error) ends the connection.
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if any(task.exception() is not None or task.result() != _EOF for task in done):
                    break
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            self.close()

    async def _requests(self) -> str | None:
        framer = _RequestFramer()
        swallowing: Canned | None = None  # answering this request: its body is read and dropped
        while not self.closed:
            data = await self.client_reader.read(_READ_SIZE)
            if not data:
                return self._half_close(self.upstream_writer)
            for kind, piece in framer.feed(data):
                if swallowing is not None:
                    if kind == "head" or framer.opaque or not framer.body_left:
                        return await self._answer(swallowing)
                    continue
                if kind == "head" and not framer.opaque:
                    canned = self.proxy._take_canned()
                    if canned is not None:
                        if framer.body_left and not _expects_continue(piece):
                            swallowing = canned
                            continue
                        return await self._answer(canned)
                if not await self._forward(piece, UP, self.upstream_writer):
                    return None
        return None

    async def _responses(self) -> str | None:
        while not self.closed:
            data = await self.upstream_reader.read(_READ_SIZE)
            if not data:
                return self._half_close(self.client_writer)
            if not await self._forward(data, DOWN, self.client_writer):
                return None
        return None

    def _half_close(self, writer: asyncio.StreamWriter) -> str:
        if writer.can_write_eof() and not writer.is_closing():
            writer.write_eof()
        return _EOF

    async def _answer(self, canned: Canned) -> None:
        # Connection: close in the answer, and closed here: nothing of the upstream can follow it on this stream.
        self.proxy.counters.canned += 1
        self.client_writer.write(canned.encode())
        try:
            await self.client_writer.drain()
        except ConnectionError:
            pass
        self.close()

    async def _forward(self, data: bytes, direction: str, writer: asyncio.StreamWriter) -> bool:
        """Forward `data` under the current mode; False once the connection is gone."""
        while data and not self.closed:
            mode = self.proxy._mode
            generation, base = self.seen[direction]
            if generation != mode.generation:
                self.seen[direction] = (mode.generation, self.sent[direction])
                base = self.sent[direction]
            applies = mode.direction == direction and mode.kind in ("reset", "stall", "drip")
            budget = mode.after - (self.sent[direction] - base) if applies else len(data)
            if budget <= 0 and mode.kind == "reset":
                self.proxy.counters.resets += 1
                self.close(reset=True)
                return False
            if budget <= 0 and mode.kind == "stall":
                await self.proxy._mode_changed(mode.generation)
                if self.proxy._stopping:
                    return False
                continue
            if budget <= 0 and mode.kind == "drip":
                budget = max(1, int(mode.rate * _DRIP_TICK_SECONDS))
                await asyncio.sleep(_DRIP_TICK_SECONDS)
            piece, data = data[:budget], data[budget:]
            writer.write(piece)
            self.sent[direction] += len(piece)
            self.proxy.counters.bytes[direction] += len(piece)
            try:
                await writer.drain()
            except ConnectionError:
                return False
        return not self.closed


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.counters = Counters()
        self._mode = _Mode("pass")
        self._lock = threading.Lock()
        self._canned: collections.deque[Canned] = collections.deque()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._connections: set[_Connection] = set()
        self._change: asyncio.Event | None = None
        self._stopping = False
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def start(self) -> "FaultProxy":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- modes (callable from any thread) ---------------------------------------------------------------------------
    def pass_through(self) -> None:
        self._set(_Mode("pass"))

    def reset_after(self, n_bytes: int, direction: str) -> None:
        self._set(_Mode("reset", _direction(direction), n_bytes))

    def stall_after(self, n_bytes: int, direction: str) -> None:
        self._set(_Mode("stall", _direction(direction), n_bytes))

    def drip(self, bytes_per_second: int, direction: str, after: int = 0) -> None:
        if bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be positive")
        self._set(_Mode("drip", _direction(direction), after, bytes_per_second))

    def refuse(self) -> None:
        """New connections are reset as soon as they are accepted; open ones carry on."""
        self._set(_Mode("refuse"))

    def answer_next(self, count: int, canned: Canned) -> None:
        """The next `count` HTTP requests (on any connection) get `canned` instead of reaching the upstream."""
        with self._lock:
            self._canned.extend([canned] * count)

    @property
    def mode(self) -> str:
        return self._mode.kind

    @property
    def canned_pending(self) -> int:
        with self._lock:
            return len(self._canned)

    def _set(self, mode: _Mode) -> None:
        with self._lock:
            self._mode = _Mode(mode.kind, mode.direction, mode.after, mode.rate, self._mode.generation + 1)
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._notify)

    def _take_canned(self) -> Canned | None:
        with self._lock:
            return self._canned.popleft() if self._canned else None

    # -- the loop's side --------------------------------------------------------------------------------------------
    def _notify(self) -> None:
        if self._change is not None:
            self._change.set()
        self._change = asyncio.Event()

    async def _mode_changed(self, generation: int) -> None:
        """Return once the mode is no longer `generation` (a stall holds here)."""
        while self._mode.generation == generation and not self._stopping:
            if self._change is None:
                self._change = asyncio.Event()
            await self._change.wait()

    async def _listen(self) -> None:
        self._change = asyncio.Event()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._stopping = True
        self._notify()  # stalled streams wake up, see the proxy stopping and end
        # Still listening for a moment: a connection the loop has accepted but not handed to _accept yet gets there,
        # sees _stopping and is reset. Closing the listener first would orphan such a connection.
        await asyncio.sleep(0.05)
        self._server.close()
        for _ in range(100):
            for connection in list(self._connections):
                connection.close(reset=True)
            if not self._tasks:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)  # transports close in callbacks: let them run before the loop stops

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counters.connections += 1
        if self._stopping or self._mode.kind == "refuse":
            self.counters.refused += not self._stopping
            _abort(writer)
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.counters.active += 1
        try:
            upstream = await asyncio.wait_for(asyncio.open_connection(*self.upstream), _CONNECT_TIMEOUT_SECONDS)
            connection = _Connection(self, (reader, writer), upstream)
            self._connections.add(connection)
            try:
                await connection.run()
            finally:
                self._connections.discard(connection)
        except (OSError, asyncio.TimeoutError):
            pass  # the upstream is unreachable: the client sees its connection reset
        finally:
            if not writer.is_closing():
                _abort(writer)
            self.counters.active -= 1
            self._tasks.discard(task)


def _direction(direction: str) -> str:
    if direction not in (UP, DOWN):
        raise ValueError(f"direction must be {UP!r} or {DOWN!r}")
    return direction
