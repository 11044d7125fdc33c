"""Routing over real sockets: only valid bucket names and Hosts reach the store (findings 3 and 7), and every
valid key is reachable while an unparseable one is refused (finding 10)."""
from __future__ import annotations

import http.server
import re
import socket
import threading
import uuid
from urllib.parse import urlsplit

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.conftest import REGION, client_for, gateway_config, start_gateway, store_env


class Listener:
    """A TCP listener on 127.0.0.1 standing in for whatever a smuggled host:port would reach (instance metadata,
    an internal service): it records every connection and the bytes sent, answers nothing, and closes."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self.port = self._socket.getsockname()[1]
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(2)
                try:
                    self.received.append(connection.recv(65536))
                except OSError:
                    self.received.append(b"")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._socket.close()


@pytest.fixture(scope="module")
def listener():
    listening = Listener()
    yield listening
    listening.close()


@pytest.fixture(scope="module")
def virtual_gateway(stack, tmp_path_factory):
    """A gateway that addresses the store virtual-hosted style (`<bucket>.localhost:<port>`): the bucket name
    becomes part of the upstream host, so an invalid one would choose where the signed request goes."""
    store_port = urlsplit(stack.store_url).port
    config = gateway_config(f"http://localhost:{store_port}", stack.key_arn, stack.access_key_id,
                            stack.secret_access_key)
    config["upstream"].update(addressing_style="virtual", connect_timeout_seconds=5, read_timeout_seconds=5)
    gateway = start_gateway(tmp_path_factory.mktemp("virtual"), "virtual", config, store_env(stack.store_url))
    yield gateway
    gateway.stop()


def _send(stack, url: str, method: str, raw_target: str, host: str) -> tuple[int, str]:
    """A request signed with the client's real credentials (so only routing can refuse it), written to the socket
    byte for byte: the target and Host exactly as given. Returns (status, S3 error code or '')."""
    request = AWSRequest(method=method, url="http://placeholder" + raw_target, headers={"Host": host})
    S3SigV4Auth(Credentials(stack.access_key_id, stack.secret_access_key), "s3", REGION).add_auth(request)
    head = f"{method} {raw_target} HTTP/1.1\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in request.headers.items())
    head += "Connection: close\r\n\r\n"
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as connection:
        connection.sendall(head.encode("utf-8"))
        response = b""
        while chunk := connection.recv(65536):
            response += chunk
    status = int(response.split(b" ", 2)[1])
    code = re.search(rb"<Code>([^<]*)</Code>", response)
    return status, code.group(1).decode() if code else ""


def test_bucket_names_that_smuggle_a_host_reach_nothing(stack, virtual_gateway, listener):
    port = listener.port
    for raw_target in [f"/127.0.0.1%3A{port}%23/x", f"/127.0.0.1%3A{port}%2Flatest%2Fmeta-data%23/x",
                       f"/127.0.0.1%3A{port}%3F/x", f"/a%40127.0.0.1%3A{port}%23/x"]:
        assert _send(stack, virtual_gateway.url, "GET", raw_target, "127.0.0.1") == (400, "InvalidBucketName")
    assert listener.received == []


def test_hosts_that_smuggle_a_host_and_path_reach_nothing(stack, virtual_gateway, listener):
    gateway_port = urlsplit(virtual_gateway.url).port
    for host in [f"127.0.0.1:{listener.port}/latest/meta-data/iam/security-credentials/role#.localhost:{gateway_port}",
                 f"127.0.0.1:{listener.port}?.localhost:{gateway_port}",
                 f"x@127.0.0.1:{listener.port}#.localhost"]:
        assert _send(stack, virtual_gateway.url, "GET", "/", host) == (400, "InvalidArgument")
    assert listener.received == []


def test_a_unicode_look_alike_in_host_does_not_change_the_bucket(stack, store):
    # U+212A KELVIN SIGN lowercases to an ASCII "k": before, this Host reached the bucket "kelvin-test".
    store.create_bucket(Bucket="kelvin-test")
    store.put_object(Bucket="kelvin-test", Key="k", Body=b"not for this request")
    gateway_port = urlsplit(stack.http.url).port
    for host in [f"\u212aelvin-test.localhost:{gateway_port}", f"\u2028kelvin-test.localhost:{gateway_port}"]:
        assert _send(stack, stack.http.url, "GET", "/k", host) == (400, "InvalidArgument")


class RecordingStore:
    """A stand-in object store that records each request line and answers 204: moto's own router cannot route a
    key with a newline, so the gateway's routing of such keys is checked against this."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        recorded = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_DELETE(self) -> None:
                recorded.append(f"{self.command} {self.path}")
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def test_keys_with_control_characters_are_reachable(stack, tmp_path):
    recording = RecordingStore()
    config = gateway_config(recording.url, stack.key_arn, stack.access_key_id, stack.secret_access_key)
    gateway = start_gateway(tmp_path, "recording", config, store_env(stack.store_url))
    try:
        client = client_for(stack, gateway.url)
        for key in ["line\nbreak", "\n", "cr\rtab\tnul\x00del\x7f"]:
            client.delete_object(Bucket="envelope-test", Key=key)
    finally:
        gateway.stop()
        recording.close()
    assert recording.requests == ["DELETE /envelope-test/line%0Abreak", "DELETE /envelope-test/%0A",
                                  "DELETE /envelope-test/cr%0Dtab%09nul%00del%7F"]


def test_keys_with_carriage_returns_and_tabs_round_trip(s3, stack):
    key = f"routing/{uuid.uuid4().hex}/cr\rtab\t"
    s3.put_object(Bucket=stack.bucket, Key=key, Body=b"payload")
    assert s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == b"payload"


def test_escapes_that_are_not_utf8_are_refused(stack):
    gateway_host = urlsplit(stack.http.url).netloc
    for raw_target in [f"/{stack.bucket}/routing%FF", f"/{stack.bucket}/routing%C3",
                       f"/{stack.bucket}?list-type=2&prefix=%FF", f"/{stack.bucket}/100%"]:
        assert _send(stack, stack.http.url, "GET", raw_target, gateway_host) == (400, "InvalidURI")
    assert _send(stack, stack.http.url, "PUT", f"/{stack.bucket}/routing%FF", gateway_host) == (400, "InvalidURI")


def test_keys_over_1024_bytes_are_refused(s3, stack):
    for key in ["k" * 1025, "\u00e9" * 513]:
        with pytest.raises(ClientError) as err:
            s3.put_object(Bucket=stack.bucket, Key=key, Body=b"x")
        assert (err.value.response["Error"]["Code"], err.value.response["ResponseMetadata"]["HTTPStatusCode"]) == \
            ("KeyTooLongError", 400)
    assert s3.put_object(Bucket=stack.bucket, Key="k" * 1024, Body=b"x")["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_invalid_bucket_names_are_refused_path_style(s3):
    for bucket in ["MyBucket", "my_bucket", "ab", "192.168.5.4", "my..bucket"]:
        with pytest.raises(ClientError) as err:
            s3.list_objects_v2(Bucket=bucket)
        assert err.value.response["Error"]["Code"] == "InvalidBucketName"
