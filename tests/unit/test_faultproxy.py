"""The fault proxy (tests/faultproxy.py) and the raw peers (tests/rawpeers.py) do what they say, against a tiny
echo server and a tiny HTTP server on 127.0.0.1."""
from __future__ import annotations

import datetime
import http.client
import http.server
import socket
import socketserver
import threading
import time

import pytest

from gateway.s3.sigv4 import Credentials, verify_request
from tests.faultproxy import (DOWN, INTERNAL_ERROR, KMS_INTERNAL_FAILURE, SLOW_DOWN, UP, FaultProxy,
                              _RequestFramer)
from tests.rawpeers import RawPeer, signed_head, wait_until_closed

BODY = bytes(range(256)) * 400  # 102,400 bytes: more than one read


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        try:
            while chunk := self.request.recv(65536):
                self.server.received += chunk  # type: ignore[attr-defined]
                self.request.sendall(chunk)
        except ConnectionError:
            pass  # the proxy reset the connection: what some tests do on purpose


class _Http(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.server.requests += 1  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def do_PUT(self) -> None:
        self.server.requests += 1  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _serve(server: socketserver.TCPServer):
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


@pytest.fixture
def echo():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.received = bytearray()  # type: ignore[attr-defined]
    yield _serve(server)
    server.shutdown()
    server.server_close()


@pytest.fixture
def web():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Http)
    server.requests = 0  # type: ignore[attr-defined]
    yield _serve(server)
    server.shutdown()
    server.server_close()


def _proxy(server: socketserver.TCPServer) -> FaultProxy:
    return FaultProxy("127.0.0.1", server.server_address[1]).start()


@pytest.fixture
def echo_proxy(echo):
    proxy = _proxy(echo)
    yield proxy
    proxy.stop()


@pytest.fixture
def web_proxy(web):
    proxy = _proxy(web)
    yield proxy
    proxy.stop()


def _connect(proxy: FaultProxy, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)


def _get(proxy: FaultProxy, path: str = "/") -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _recv_until_end(sock: socket.socket) -> tuple[bytes, str]:
    """Everything until the connection ends; how it ended: "eof", "reset" or "timeout"."""
    out = bytearray()
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return bytes(out), "reset"
        except socket.timeout:
            return bytes(out), "timeout"
        if not chunk:
            return bytes(out), "eof"
        out += chunk


# -- pure framing ---------------------------------------------------------------------------------------------------
def test_framer_finds_heads_split_across_reads_and_skips_bodies():
    framer = _RequestFramer()
    head = b"PUT /a HTTP/1.1\r\nContent-Length: 5\r\n\r\n"
    assert framer.feed(head[:10]) == []
    assert framer.feed(head[10:]) == [("head", head)]
    assert framer.feed(b"hel") == [("data", b"hel")]
    assert framer.feed(b"loGET /b HTTP/1.1\r\n\r\n") == [("data", b"lo"), ("head", b"GET /b HTTP/1.1\r\n\r\n")]
    assert not framer.opaque


def test_framer_turns_opaque_on_what_is_not_http():
    framer = _RequestFramer()
    assert framer.feed(b"\0\1\2") == [("data", b"\0\1\2")]
    assert framer.opaque
    chunked = _RequestFramer()
    assert chunked.feed(b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n")[1] == ("data", b"5\r\n")
    assert chunked.opaque


# -- byte modes -----------------------------------------------------------------------------------------------------
def test_pass_forwards_both_ways_and_counts(echo, echo_proxy):
    with _connect(echo_proxy) as sock:
        sock.sendall(BODY)
        sock.shutdown(socket.SHUT_WR)
        data, ended = _recv_until_end(sock)
    assert (data, ended) == (BODY, "eof")
    assert echo_proxy.counters.bytes == {UP: len(BODY), DOWN: len(BODY)}
    assert echo_proxy.counters.connections == 1


def test_reset_after_n_request_bytes(echo, echo_proxy):
    echo_proxy.reset_after(1000, UP)
    with _connect(echo_proxy) as sock:
        sock.sendall(BODY[:5000])
        data, ended = _recv_until_end(sock)
    assert ended == "reset"
    assert len(data) <= 1000
    deadline = time.monotonic() + 10
    while len(echo.received) < 1000 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert bytes(echo.received) == BODY[:1000]  # exactly N bytes reached the server, not one more
    assert echo_proxy.counters.resets == 1


def test_reset_after_n_response_bytes(web, web_proxy):
    web_proxy.reset_after(3000, DOWN)
    with _connect(web_proxy) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data, ended = _recv_until_end(sock)
    assert ended == "reset"
    assert len(data) <= 3000
    assert web_proxy.counters.bytes[DOWN] == 3000


def test_a_byte_fault_counts_from_when_it_is_set(echo, echo_proxy):
    with _connect(echo_proxy) as sock:
        sock.sendall(b"x" * 500)
        assert _recv_exactly(sock, 500) == b"x" * 500
        echo_proxy.reset_after(100, UP)  # an open connection gets 100 more bytes, not 100 in total
        sock.sendall(b"y" * 300)
        data, ended = _recv_until_end(sock)
    assert ended == "reset"
    assert echo_proxy.counters.bytes[UP] == 600


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        assert chunk, "connection ended early"
        out += chunk
    return bytes(out)


def test_stall_holds_the_connection_open_and_resumes_on_pass(web, web_proxy):
    web_proxy.stall_after(2000, DOWN)
    with _connect(web_proxy, timeout=0.5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data, ended = _recv_until_end(sock)
        assert ended == "timeout"  # nothing more arrived, and the connection is still open
        assert len(data) == 2000
        assert web_proxy.counters.active == 1
        web_proxy.pass_through()
        sock.settimeout(10)
        rest = _recv_exactly(sock, len(BODY) - (2000 - data.index(b"\r\n\r\n") - 4))
    assert (data + rest).endswith(BODY)


def test_stall_of_requests(echo, echo_proxy):
    echo_proxy.stall_after(10, UP)
    with _connect(echo_proxy, timeout=0.5) as sock:
        sock.sendall(b"z" * 100)
        data, ended = _recv_until_end(sock)
        assert (data, ended) == (b"z" * 10, "timeout")
        echo_proxy.pass_through()
        sock.settimeout(10)
        assert _recv_exactly(sock, 90) == b"z" * 90


def test_drip_forwards_slowly_but_intact(web, web_proxy):
    web_proxy.drip(200_000, DOWN)  # 102 KB of body: at least half a second
    started = time.monotonic()
    status, body = _get(web_proxy)
    elapsed = time.monotonic() - started
    assert (status, body) == (200, BODY)
    assert elapsed >= 0.4  # a lower bound only: a slow machine cannot make this fail


def test_refuse_resets_new_connections_only(echo, echo_proxy):
    with _connect(echo_proxy) as open_before:
        open_before.sendall(b"a")
        assert _recv_exactly(open_before, 1) == b"a"
        echo_proxy.refuse()
        try:
            with _connect(echo_proxy) as refused:  # the reset may already arrive during connect
                data, ended = _recv_until_end(refused)
                assert (data, ended) in ((b"", "reset"), (b"", "eof"))
        except ConnectionResetError:
            pass
        open_before.sendall(b"b")
        assert _recv_exactly(open_before, 1) == b"b"
    echo_proxy.pass_through()
    with _connect(echo_proxy) as again:
        again.sendall(b"c")
        assert _recv_exactly(again, 1) == b"c"
    assert echo_proxy.counters.refused == 1


# -- canned answers -------------------------------------------------------------------------------------------------
def test_answers_the_next_k_requests_itself(web, web_proxy):
    web_proxy.answer_next(2, SLOW_DOWN)
    first, second, third = _get(web_proxy), _get(web_proxy), _get(web_proxy)
    assert first[0] == second[0] == 503
    assert b"<Code>SlowDown</Code>" in first[1]
    assert third == (200, BODY)
    assert web.requests == 1 and web_proxy.counters.canned == 2


def test_a_canned_answer_swallows_the_request_body_and_closes(web, web_proxy):
    connection = http.client.HTTPConnection("127.0.0.1", web_proxy.port, timeout=10)
    connection.request("PUT", "/k", body=b"q" * 40_000)
    assert connection.getresponse().read() == b"q" * 40_000  # keep-alive connection, forwarded
    web_proxy.answer_next(1, INTERNAL_ERROR)
    connection.request("PUT", "/k", body=b"r" * 40_000)
    response = connection.getresponse()
    assert response.status == 500 and b"<Code>InternalError</Code>" in response.read()
    assert response.getheader("Connection") == "close"
    connection.close()
    assert web.requests == 1


def test_kms_style_json_failure(web, web_proxy):
    web_proxy.answer_next(1, KMS_INTERNAL_FAILURE)
    connection = http.client.HTTPConnection("127.0.0.1", web_proxy.port, timeout=10)
    connection.request("POST", "/", body=b"{}", headers={"Content-Type": "application/x-amz-json-1.1"})
    response = connection.getresponse()
    assert response.status == 500
    assert response.getheader("Content-Type") == "application/x-amz-json-1.1"
    assert b"KMSInternalException" in response.read()
    connection.close()


def test_an_expect_100_continue_request_is_answered_before_its_body(web, web_proxy):
    web_proxy.answer_next(1, SLOW_DOWN)
    with _connect(web_proxy) as sock:
        sock.sendall(b"PUT /k HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n")
        data, ended = _recv_until_end(sock)
    assert data.startswith(b"HTTP/1.1 503 ") and ended == "eof"


def test_stop_ends_stalled_connections(web):
    proxy = _proxy(web)
    proxy.stall_after(0, DOWN)
    sock = _connect(proxy)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    proxy.stop()
    with sock:
        _, ended = _recv_until_end(sock)
    assert ended in ("reset", "eof")


# -- raw peers ------------------------------------------------------------------------------------------------------
def test_signed_head_verifies_with_the_gateways_verifier():
    credentials = Credentials("AKIDEXAMPLE", "secret-example")
    head = signed_head("http://127.0.0.1:9", "PUT", "/bucket/a%20key", credentials,
                       headers={"content-length": "7"})
    lines = head.decode().split("\r\n")
    method, target, _ = lines[0].split(" ")
    headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:] if line]
    verified = verify_request(method, target, "", headers, {"AKIDEXAMPLE": "secret-example"}.get,
                              datetime.datetime.now(datetime.timezone.utc))
    assert verified.access_key_id == "AKIDEXAMPLE"


def test_raw_peer_reset_reaches_the_server_as_a_reset():
    with socket.create_server(("127.0.0.1", 0)) as server:
        peer = RawPeer(f"http://127.0.0.1:{server.getsockname()[1]}")
        accepted, _ = server.accept()
        with accepted:
            peer.send(b"partial")
            assert accepted.recv(7) == b"partial"
            peer.reset()
            accepted.settimeout(10)
            with pytest.raises(ConnectionResetError):
                accepted.recv(1)


def test_wait_until_closed_reports_who_the_server_closed():
    with socket.create_server(("127.0.0.1", 0)) as server:
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        peers = [RawPeer(url) for _ in range(3)]
        accepted = [server.accept()[0] for _ in peers]
        accepted[0].sendall(b"bye")
        accepted[0].close()
        accepted[1].close()
        still_open = wait_until_closed(peers, deadline_seconds=0.5)
        for sock in accepted[2:]:
            sock.close()
    assert [peer.ended_by for peer in peers[:2]] == ["eof", "eof"]
    assert bytes(peers[0].received) == b"bye"
    assert still_open == [peers[2]]
    for peer in peers:
        peer.close()
