"""A KMS endpoint for failure tests: an HTTP server on 127.0.0.1 that forwards KMS's JSON protocol to moto, and
on request answers `ThrottlingException`, hangs, delays, or goes away (connection refused), and plays the faults of
`fail` (KMS 5xx, throttling, a reset connection, an answer stalled or cut off mid-body, a 200 that is not KMS's). Real
sockets: the gateway under test talks to it as to any KMS endpoint.

It also does what moto 5 does not: it refuses cryptographic operations on a key that is disabled or pending
deletion (`DisabledException`, `KMSInvalidStateException`), as AWS KMS does. Moto records DisableKey and
ScheduleKeyDeletion (DescribeKey shows them) but still answers Decrypt and GenerateDataKey for such keys; this
front reads the key's state from moto with DescribeKey before forwarding.
"""
from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import urllib.error
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3

# The operations AWS refuses for a key that is not Enabled, and where their requests name the key.
_KEY_PARAMETERS = {"GenerateDataKey": ("KeyId",), "Decrypt": ("KeyId",), "Encrypt": ("KeyId",),
                   "ReEncrypt": ("SourceKeyId", "DestinationKeyId")}
_STATE_ERRORS = {"Disabled": "DisabledException", "PendingDeletion": "KMSInvalidStateException"}
# The error answers `fail` can play: (HTTP status, KMS error code).
ERROR_ANSWERS = {"unavailable": (503, "ServiceUnavailable"), "internal": (500, "InternalFailure"),
                 "kms_internal": (500, "KMSInternalException"), "throttle": (400, "ThrottlingException")}
# ... and the ones that are not KMS answers at all.
BROKEN_ANSWERS = ("reset", "stall", "truncate", "garbage")


class KmsFront:
    def __init__(self, moto_url: str, region: str, access_key_id: str, secret_access_key: str) -> None:
        self._moto_url = moto_url
        self._moto = boto3.client("kms", endpoint_url=moto_url, region_name=region,
                                  aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key)
        self._lock = threading.Lock()
        self.received: Counter[str] = Counter()  # every request, by operation (X-Amz-Target)
        self.throttle_next = 0
        self.delay_seconds = 0.0
        self._fault: str | None = None
        self._fault_count = 0
        self._connections: set[socket.socket] = set()
        self._answering = threading.Event()
        self._answering.set()
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with front._lock:
                    front._connections.add(self.connection)

            def finish(self) -> None:
                with front._lock:
                    front._connections.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                operation = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
                fault = front._take_fault(operation)
                if fault in BROKEN_ANSWERS:
                    self._broken(fault)
                    return
                status, payload = front._answer(operation, body, dict(self.headers), fault)
                if status is None:
                    self.close_connection = True
                    return
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _broken(self, fault: str) -> None:
                self.close_connection = True
                if fault == "reset":  # RST, not FIN: linger 0 on close
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                if fault == "garbage":  # a proxy's page, with a 200
                    page = b"<html><body>Service temporarily unavailable</body></html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    self.wfile.write(page)
                    return
                # stall: the head and a little of the body, then nothing until `answer_again` (or 60 s);
                # truncate: the same, then the connection closes.
                self.send_response(200)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", "1000")
                self.end_headers()
                self.wfile.write(b'{"KeyId": ')
                self.wfile.flush()
                if fault == "stall":
                    front._answering.clear()
                    front._answering.wait(timeout=60)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.handle_error = lambda request, address: None  # a hung-up gateway is expected here
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def fail(self, fault: str, count: int = 10**9) -> None:
        """Answer the next `count` requests with `fault` (a name of ERROR_ANSWERS or BROKEN_ANSWERS); DescribeKey
        too. `fail(None)` ends it."""
        assert fault is None or fault in ERROR_ANSWERS or fault in BROKEN_ANSWERS, fault
        with self._lock:
            self._fault, self._fault_count = fault, count if fault else 0

    def _take_fault(self, operation: str) -> str | None:
        with self._lock:
            if self._fault is None or self._fault_count <= 0:
                return None
            self._fault_count -= 1
            if self._fault in BROKEN_ANSWERS:
                self.received[operation] += 1  # `_answer` counts the others
            return self._fault

    def hang(self) -> None:
        """Accept requests but answer none of them (a black-holed KMS) until `answer_again`."""
        self._answering.clear()

    def answer_again(self) -> None:
        self._answering.set()

    def stop(self) -> None:
        """Go away: nothing listens on the port any more (connection refused), and the connections the gateway
        keeps alive are cut."""
        self._answering.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def _answer(self, operation: str, body: bytes, headers: dict[str, str],
                fault: str | None = None) -> tuple[int | None, bytes]:
        with self._lock:
            self.received[operation] += 1
            throttled = self.throttle_next > 0
            if throttled:
                self.throttle_next -= 1
        if not self._answering.wait(timeout=60):
            return None, b""
        if throttled:
            return 400, _error("ThrottlingException", "Rate exceeded")
        if fault is not None:
            status, code = ERROR_ANSWERS[fault]
            return status, _error(code, "Injected by the test's KMS front")
        if operation == "Decrypt" and self.delay_seconds:
            threading.Event().wait(self.delay_seconds)
        params = json.loads(body or b"{}")
        for name in _KEY_PARAMETERS.get(operation, ()):
            if name in params:
                state = self._moto.describe_key(KeyId=params[name])["KeyMetadata"]["KeyState"]
                if state in _STATE_ERRORS:
                    return 400, _error(_STATE_ERRORS[state], f"The key is {state}.")
        forwarded = {name: value for name, value in headers.items() if name.lower() not in ("host", "connection")}
        request = urllib.request.Request(self._moto_url + "/", data=body, headers=forwarded, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()


def _error(code: str, message: str) -> bytes:
    return json.dumps({"__type": code, "message": message}).encode()
