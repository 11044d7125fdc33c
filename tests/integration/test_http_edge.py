"""The HTTP front door over raw sockets against real `serve` processes: request heads that never finish, heads
too large, malformed HTTP, `Expect: 100-continue` refusals, and what reaches the logs.

No timed assertions: closures are awaited with generous upper bounds (a socket timeout far above the gateway's
own timeout), never measured."""
from __future__ import annotations

import http.client
import io
import re
import resource
import selectors
import socket
import time
import urllib.request
import uuid
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from tests.conftest import client_for, gateway_config, start_gateway, store_env

HEAD_SECONDS = 1.0
KEEPALIVE_SECONDS = HEAD_SECONDS * 4  # longer than the keep-alive test above waits
# Far above every timeout the gateways here use: a bound for "it was closed", never a measurement.
PATIENCE_SECONDS = 60.0


@pytest.fixture(scope="module")
def edge(stack, tmp_path_factory):
    """A gateway with a short request-head timeout and text logs (the format that can be injected into)."""
    config = {**gateway_config(stack.store_url, stack.key_arn, stack.access_key_id, stack.secret_access_key),
              "timeouts": {"request_head_seconds": HEAD_SECONDS, "keepalive_seconds": KEEPALIVE_SECONDS},
              "log_format": "text"}
    gateway = start_gateway(tmp_path_factory.mktemp("edge"), "edge", config, store_env(stack.store_url))
    yield gateway
    gateway.stop()


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname, parts.port


def _connect(url: str) -> socket.socket:
    sock = socket.create_connection(_address(url), timeout=PATIENCE_SECONDS)
    return sock


def _response(sock: socket.socket, method: str = "GET") -> http.client.HTTPResponse:
    response = http.client.HTTPResponse(sock, method=method)
    response.begin()
    return response


def _closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed the connection (EOF or reset) within PATIENCE_SECONDS."""
    sock.settimeout(PATIENCE_SECONDS)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _metric(gateway, name: str) -> float:
    text = urllib.request.urlopen(gateway.admin_url + "/metrics", timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


# --- 15.3: request heads that never finish ------------------------------------------------------------------

def test_half_sent_heads_are_closed_and_counted(edge):
    before = _metric(edge, "envelope_request_head_timeouts_total")
    socks = [_connect(edge.url) for _ in range(5)]
    for sock in socks:
        sock.sendall(b"GET /bucket/key HT")
    try:
        assert all(_closed_by_server(sock) for sock in socks)
    finally:
        for sock in socks:
            sock.close()
    assert _metric(edge, "envelope_request_head_timeouts_total") >= before + 5
    # Logged (rate-limited), and never with the bytes of the request.
    assert "request head" in edge.log()
    assert "/bucket/key" not in edge.log()


def test_a_silent_connection_is_closed_too(edge):
    sock = _connect(edge.url)
    try:
        assert _closed_by_server(sock)
    finally:
        sock.close()


def test_a_pipelined_half_head_is_timed_from_the_end_of_the_response(edge):
    sock = _connect(edge.url)
    try:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /bucket/key HT")
        assert _response(sock).status == 403  # unsigned
        assert _closed_by_server(sock)
    finally:
        sock.close()


def test_keep_alive_connections_between_requests_are_not_head_timed(edge, stack):
    """An idle keep-alive connection (nothing sent after a response) is the keep-alive timeout's, not ours."""
    sock = _connect(edge.url)
    try:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        _response(sock).read()
        sock.settimeout(HEAD_SECONDS * 3)
        with pytest.raises(TimeoutError):
            sock.recv(1)  # still open well past the head timeout
    finally:
        sock.close()


def test_idle_keep_alive_connections_are_closed_after_the_keepalive_timeout(edge, stack):
    """aiohttp's own default keeps an idle connection for an hour: any peer could hold descriptors with one
    request a minute. timeouts.keepalive_seconds closes it (here after 3 × HEAD_SECONDS)."""
    sock = _connect(edge.url)
    try:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        _response(sock).read()
        sock.settimeout(KEEPALIVE_SECONDS + 30)
        assert sock.recv(1) == b""  # closed by the gateway, not left for the client to close
    finally:
        sock.close()


def test_a_thousand_half_sent_heads_while_valid_requests_succeed(stack, tmp_path_factory):
    """Start-up raises the soft open-file limit to the hard one (here started at 256): 1,000 idle half-sent heads
    are held at once, valid requests still succeed, and every half-sent head is closed by its timeout."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"the hard open-file limit ({hard}) is too low for this test")
    config = {**gateway_config(stack.store_url, stack.key_arn, stack.access_key_id, stack.secret_access_key),
              "timeouts": {"request_head_seconds": 10}}
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))  # inherited by the gateway process
    try:
        gateway = start_gateway(tmp_path_factory.mktemp("fds"), "fds", config, store_env(stack.store_url))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    socks: list[socket.socket] = []
    try:
        limits = open(f"/proc/{gateway.pid}/limits").read()
        assert re.search(r"Max open files\s+(\S+)\s+(\S+)", limits).group(1) != "256"
        assert "open file limit" in gateway.log()
        for _ in range(1000):
            sock = socket.create_connection(_address(gateway.url), timeout=PATIENCE_SECONDS)
            sock.sendall(b"PUT /b/k HTTP/1.1\r\nHost: ")
            socks.append(sock)
        s3 = client_for(stack, gateway.url, connect_timeout=PATIENCE_SECONDS, read_timeout=PATIENCE_SECONDS)
        key = f"edge/{uuid.uuid4().hex}"
        s3.put_object(Bucket=stack.bucket, Key=key, Body=b"still serving")
        assert s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == b"still serving"
        open_socks = set(socks)
        with selectors.DefaultSelector() as selector:
            for sock in socks:
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ)
            deadline = time.monotonic() + PATIENCE_SECONDS * 2
            while open_socks and time.monotonic() < deadline:
                for key_, _ in selector.select(timeout=1):
                    sock = key_.fileobj
                    try:
                        data = sock.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except ConnectionResetError:
                        data = b""
                    if not data:
                        selector.unregister(sock)
                        open_socks.discard(sock)
        assert not open_socks, f"{len(open_socks)} half-sent heads still open"
    finally:
        for sock in socks:
            sock.close()
        gateway.stop()


# --- 15.8: heads over 8 KiB ---------------------------------------------------------------------------------

def _assert_s3_error(response: http.client.HTTPResponse, code: str, status: int = 400) -> bytes:
    body = response.read()
    assert response.status == status
    assert response.getheader("Content-Type") == "application/xml"
    assert f"<Code>{code}</Code>".encode() in body
    assert response.getheader("Connection", "").lower() == "close"
    return body


@pytest.mark.parametrize("head", [
    b"GET / HTTP/1.1\r\nHost: x\r\nx-big: " + b"a" * 9000 + b"\r\n\r\n",                # one long field
    b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"x-h%d: %s\r\n" % (i, b"v" * 40) for i in range(200)) + b"\r\n",
], ids=["long-field", "many-fields"])
def test_a_head_over_8_kib_is_refused_as_s3_does(edge, head):
    sock = _connect(edge.url)
    try:
        sock.sendall(head)
        body = _assert_s3_error(_response(sock), "RequestHeaderSectionTooLarge")
        assert b"aaaa" not in body and b"vvvv" not in body
        assert _closed_by_server(sock)
    finally:
        sock.close()


def test_a_head_trickled_past_the_limit_is_refused_before_it_ends(edge):
    sock = _connect(edge.url)
    try:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        for i in range(40):  # never finished: the gateway must not wait for the end to refuse it
            try:
                sock.sendall(b"x-h%d: %s\r\n" % (i, b"v" * 1000))
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.01)
        _assert_s3_error(_response(sock), "RequestHeaderSectionTooLarge")
    finally:
        sock.close()


def test_presigned_urls_of_8_kib_still_work(edge, stack):
    s3 = client_for(stack, edge.url)
    key = f"edge/{uuid.uuid4().hex}"
    s3.put_object(Bucket=stack.bucket, Key=key, Body=b"long url")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": stack.bucket, "Key": key,
                                                          "ResponseContentDisposition": "inline; x=" + "y" * 8000})
    assert len(url) > 8200
    with urllib.request.urlopen(url, timeout=PATIENCE_SECONDS) as response:
        assert response.read() == b"long url"


# --- 14.9: malformed HTTP and logs --------------------------------------------------------------------------

def test_malformed_http_gets_s3_xml_without_an_echo_and_is_closed(edge):
    sock = _connect(edge.url)
    try:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nno-colon-here-SECRETISH\r\n\r\n")
        body = _assert_s3_error(_response(sock), "BadRequest")
        assert b"SECRETISH" not in body
        assert _closed_by_server(sock)
    finally:
        sock.close()


def test_a_malformed_authorization_header_is_never_logged(edge):
    signature = "f" * 24 + uuid.uuid4().hex + "e" * 8
    sock = _connect(edge.url)
    try:
        sock.sendall(b"GET /bucket/key HTTP/1.1\r\nHost: x\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIA/"
                     b"20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature="
                     + signature.encode() + b"\x01\r\n\r\n")
        body = _assert_s3_error(_response(sock), "BadRequest")
        assert signature.encode() not in body
    finally:
        sock.close()
    assert signature not in edge.log()
    assert signature[:24] not in edge.log()


def test_control_characters_in_keys_are_escaped_in_text_logs(edge, stack):
    s3 = client_for(stack, edge.url)
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket=stack.bucket, Key="edge/a\rforged=1 level=INFO")
    assert err.value.response["Error"]["Code"] == "404"  # authenticated: the key reaches the access log
    log = edge.log_path.read_bytes()
    assert b"\r" not in log
    assert b'key="edge/a\\x0dforged=1 level=INFO"' in log  # escaped, and quoted: no field can be forged


# --- 15.6: an early answer to Expect: 100-continue ----------------------------------------------------------

def test_a_refused_expect_put_does_not_desynchronise_a_boto3_pool(edge, stack):
    s3 = client_for(stack, edge.url)

    def spoil_signature(request, **_):
        if request.method == "PUT" and "spoiled" in request.url:
            authorization = request.headers["Authorization"]
            authorization = authorization.decode() if isinstance(authorization, bytes) else authorization
            request.headers["Authorization"] = authorization[:-4] + "0000"

    s3.meta.events.register("before-send.s3.PutObject", spoil_signature)
    key = f"edge/{uuid.uuid4().hex}"
    for _ in range(3):
        with pytest.raises(ClientError) as err:
            s3.put_object(Bucket=stack.bucket, Key=key + "-spoiled", Body=io.BytesIO(b"x" * 100_000))
        assert err.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
        s3.put_object(Bucket=stack.bucket, Key=key, Body=io.BytesIO(b"fine"))  # the same pool, right after
        assert s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == b"fine"


def test_a_refused_expect_put_closes_the_raw_connection(edge, stack):
    sock = _connect(edge.url)
    try:
        sock.sendall(b"PUT /%s/k HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
                     b"Authorization: AWS4-HMAC-SHA256 Credential=AKIAUNKNOWN/20240101/us-east-1/s3/aws4_request, "
                     b"SignedHeaders=host, Signature=00\r\n\r\n" % stack.bucket.encode())
        response = _response(sock, "PUT")
        assert response.status in (400, 403)
        response.read()
        assert response.getheader("Connection", "").lower() == "close"
        # The client may still send what it announced; what follows is never read as a request.
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        assert _closed_by_server(sock)
    finally:
        sock.close()
    # A new connection works.
    sock = _connect(edge.url)
    try:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _response(sock).status == 403
    finally:
        sock.close()
