"""Raw-socket clients that misbehave on purpose: half-sent heads, uploads that stop or crawl, downloads nobody
reads. Plain blocking sockets to 127.0.0.1 with timeouts, so a test can hold a thousand of them from one thread.

Every wait here is bounded: each blocking call has a socket timeout, and the waits over many peers take a deadline.
"""
from __future__ import annotations

import datetime
import os
import selectors
import socket
import struct
import time
from urllib.parse import urlsplit

from gateway.s3.sigv4 import Credentials, sign_request

UNSIGNED = "UNSIGNED-PAYLOAD"


def signed_head(url: str, method: str, path: str, credentials: Credentials, *, query: str = "",
                headers: dict[str, str] | None = None, payload_hash: str = UNSIGNED,
                region: str = "us-east-1") -> bytes:
    """A complete HTTP/1.1 request head signed with SigV4 for the gateway at `url`. `path` and `query` go on the
    wire exactly as given (already encoded)."""
    host = urlsplit(url).netloc
    fields = {"host": host, **(headers or {})}
    fields.update(sign_request(method, path, query, fields, payload_hash, credentials, region,
                               datetime.datetime.now(datetime.timezone.utc)))
    target = path + (f"?{query}" if query else "")
    lines = [f"{method} {target} HTTP/1.1"] + [f"{name}: {value}" for name, value in fields.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class RawPeer:
    """One client connection. Construct, then send/read/stall as the test needs; `reset()` ends it with a RST."""

    def __init__(self, url: str, *, timeout: float = 10.0, receive_buffer: int | None = None) -> None:
        parts = urlsplit(url)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            # Before connect, so the advertised window stays small: an unread response backs up into the sender.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.timeout = timeout
        self.sock.settimeout(timeout)
        self.sock.connect((parts.hostname or "127.0.0.1", parts.port or 80))
        self.opened_at = time.monotonic()
        self.received = bytearray()
        self.closed_at: float | None = None  # monotonic time the peer saw the gateway end the connection
        self.ended_by: str | None = None  # "eof" or "reset"

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def drip(self, data: bytes, bytes_per_second: int, deadline_seconds: float) -> int:
        """Send `data` at about `bytes_per_second`; stop at the deadline or when the gateway closes. Returns the
        number of bytes sent."""
        step = max(1, bytes_per_second // 20)
        end = time.monotonic() + deadline_seconds
        sent = 0
        while sent < len(data) and time.monotonic() < end:
            try:
                self.sock.sendall(data[sent:sent + step])
            except OSError:
                break
            sent += min(step, len(data) - sent)
            time.sleep(0.05)
        return sent

    def read(self, n_bytes: int) -> bytes:
        """Read up to `n_bytes` (fewer if the connection ends or the socket times out)."""
        out = bytearray()
        while len(out) < n_bytes:
            try:
                chunk = self.sock.recv(min(65536, n_bytes - len(out)))
            except socket.timeout:
                break
            except ConnectionResetError:
                self._ended("reset")
                break
            if not chunk:
                self._ended("eof")
                break
            out += chunk
        self.received += out
        return bytes(out)

    def read_to_end(self, deadline_seconds: float) -> bytes:
        """Read until the gateway ends the connection or the deadline passes."""
        end = time.monotonic() + deadline_seconds
        try:
            while self.ended_by is None and time.monotonic() < end:
                self.sock.settimeout(max(0.01, min(1.0, end - time.monotonic())))
                self.read(1 << 20)
        finally:
            self.sock.settimeout(self.timeout)
        return bytes(self.received)

    def status(self) -> int | None:
        head = bytes(self.received).split(b"\r\n", 1)[0].split()
        return int(head[1]) if len(head) >= 2 and head[1].isdigit() else None

    def reset(self) -> None:
        """Close with SO_LINGER 0: the gateway sees a TCP RST, as from a crashed client."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.sock.close()

    def close(self) -> None:
        self.sock.close()

    def _ended(self, how: str) -> None:
        if self.ended_by is None:
            self.ended_by, self.closed_at = how, time.monotonic()


def partial_head(url: str) -> RawPeer:
    """A connection that sends the start of a request head and nothing more."""
    peer = RawPeer(url)
    peer.send(f"GET / HTTP/1.1\r\nHost: {urlsplit(url).netloc}\r\nUser-Agent: stall".encode())
    return peer


def stalled_upload(url: str, credentials: Credentials, bucket: str, key: str, declared: int, sent: int) -> RawPeer:
    """A signed PUT declaring `declared` body bytes that sends only the first `sent` of them, then stops."""
    peer = RawPeer(url)
    peer.send(signed_head(url, "PUT", f"/{bucket}/{key}", credentials,
                          headers={"content-length": str(declared)}))
    peer.send(b"\0" * sent)
    return peer


def unread_get(url: str, credentials: Credentials, bucket: str, key: str, read: int = 0) -> RawPeer:
    """A signed GET whose response is read for `read` bytes and then no more, through a small receive window."""
    peer = RawPeer(url, receive_buffer=4096)
    peer.send(signed_head(url, "GET", f"/{bucket}/{key}", credentials))
    if read:
        peer.read(read)
    return peer


def wait_until_closed(peers: list[RawPeer], deadline_seconds: float) -> list[RawPeer]:
    """Watch `peers` until each has seen the gateway end its connection (EOF or RST), or the deadline passes.
    Whatever the gateway sends meanwhile is read (and kept): use it for peers whose responses may be read.
    Returns the peers still open at the deadline."""
    selector = selectors.DefaultSelector()
    for peer in peers:
        if peer.ended_by is None:
            peer.sock.setblocking(False)
            selector.register(peer.sock, selectors.EVENT_READ, peer)
    end = time.monotonic() + deadline_seconds
    try:
        while selector.get_map() and time.monotonic() < end:
            for key, _ in selector.select(timeout=min(1.0, max(0.0, end - time.monotonic()))):
                peer = key.data
                try:
                    chunk = peer.sock.recv(65536)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    chunk, how = b"", "reset"
                else:
                    how = "eof"
                if chunk:
                    peer.received += chunk
                else:
                    peer._ended(how)
                    selector.unregister(peer.sock)
    finally:
        selector.close()
        for peer in peers:
            if peer.sock.fileno() >= 0:
                peer.sock.settimeout(peer.timeout)  # blocking again, as the other methods expect
    return [peer for peer in peers if peer.ended_by is None]


def open_fds(pid: int) -> int:
    """How many file descriptors a process holds (each connection it keeps open is one)."""
    return len(os.listdir(f"/proc/{pid}/fd"))
