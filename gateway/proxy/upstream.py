"""The re-signing client to the object store: the only place that talks to the upstream.

Requests are signed with the gateway's own credentials (never the client's); bodies are either small `bytes`
or an async iterator of ciphertext with an exact Content-Length, so the store never sees chunked encoding.
"""
from __future__ import annotations

import datetime
import socket
import time
from collections.abc import AsyncIterable, Sequence
from types import SimpleNamespace
from typing import Protocol
from urllib.parse import quote, urlsplit

import aiohttp
from aiobotocore.session import get_session
from yarl import URL

from gateway import errors
from gateway.observability.logs import upstream_request_id
from gateway.observability.metrics import Metrics
from gateway.proxy.storefaults import STORE_FAULTS, store_fault
from gateway.proxy.sockets import READ_BUFFER_BYTES, set_send_buffer
from gateway.s3.names import check_bucket, check_key
from gateway.s3.sigv4 import UNSIGNED_PAYLOAD, Credentials, sign_request

_SAFE_QUERY = "-_.~"
_SAFE_PATH = "/-_.~"


class CredentialSource(Protocol):
    async def get(self) -> Credentials: ...


class StaticCredentials:
    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials

    async def get(self) -> Credentials:
        return self._credentials


class SdkCredentials:
    """The AWS SDK's default chain (env, shared files, IRSA / Pod Identity, IMDS), refreshed as the SDK decides."""

    def __init__(self) -> None:
        self._session = get_session()
        self._source = None

    async def get(self) -> Credentials:
        if self._source is None:
            self._source = await self._session.get_credentials()
            if self._source is None:
                raise errors.InternalError("No AWS credentials found for the object store (SDK default chain).")
        frozen = await self._source.get_frozen_credentials()
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token)


def encode_query(params: Sequence[tuple[str, str]]) -> str:
    # RFC 3986 encoding, the same as the canonical query, so what is signed is byte-for-byte what is sent.
    return "&".join(f"{quote(k, safe=_SAFE_QUERY)}={quote(v, safe=_SAFE_QUERY)}" for k, v in params)


class _PoolWait:
    """Per request: whether it is waiting for a free connection of the pool right now."""
    queued = False


def _queued(state: bool):
    async def on_queue(session: aiohttp.ClientSession, context: SimpleNamespace, params: object) -> None:
        if isinstance(context.trace_request_ctx, _PoolWait):
            context.trace_request_ctx.queued = state
    return on_queue


class Upstream:
    def __init__(self, endpoint: str, region: str, addressing_style: str, credentials: CredentialSource,
                 metrics: Metrics, *, max_connections: int = 256, connect_timeout_seconds: float = 10,
                 read_timeout_seconds: float = 300, pool_wait_seconds: float = 5,
                 send_buffer_bytes: int = 0) -> None:
        self.endpoint = endpoint
        parts = urlsplit(endpoint)
        self._scheme = parts.scheme or "https"
        self._netloc = parts.netloc
        self._base_path = parts.path.rstrip("/")
        self.region = region
        self._virtual = addressing_style == "virtual"
        self._credentials = credentials
        self._metrics = metrics
        self._max_connections = max_connections
        # aiohttp's `connect` bounds the wait for a pool slot and the connection together; `sock_connect` the
        # connection alone. A request still queued for a slot when `connect` expires is answered 503 SlowDown:
        # a bounded wait, never a hang behind transfers that hold every connection. `sock_read` bounds the wait
        # for the store's first response byte (counted from the request's last byte) and every gap after it.
        self._timeout = aiohttp.ClientTimeout(total=None, connect=pool_wait_seconds + connect_timeout_seconds,
                                              sock_connect=connect_timeout_seconds, sock_read=read_timeout_seconds)
        # The same bound while the gateway streams a body to the store: a body chunk the store leaves untaken
        # this long ends the upload (gateway.proxy.upload.send_sealed).
        self.idle_seconds = read_timeout_seconds
        self._send_buffer_bytes = send_buffer_bytes
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        def socket_factory(addr_info: tuple) -> socket.socket:
            family, type_, proto, _, _ = addr_info
            sock = socket.socket(family=family, type=type_, proto=proto)
            set_send_buffer(sock, self._send_buffer_bytes)
            return sock

        connector = aiohttp.TCPConnector(limit=self._max_connections, enable_cleanup_closed=True,
                                         socket_factory=socket_factory)
        queueing = aiohttp.TraceConfig()
        queueing.on_connection_queued_start.append(_queued(True))
        queueing.on_connection_queued_end.append(_queued(False))
        # auto_decompress=False: a gzip-encoded object is opaque ciphertext to us; it must not be touched.
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout, auto_decompress=False,
                                              read_bufsize=READ_BUFFER_BYTES,
                                              skip_auto_headers=("User-Agent", "Content-Type"),
                                              trace_configs=[queueing])
        await self._credentials.get()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _target(self, bucket: str | None, key: str | None) -> tuple[str, str]:
        """(host, encoded path) for a bucket/key in the configured addressing style.

        Defence in depth: resolve() already refused invalid names, but a bucket also arrives from other places
        (x-amz-copy-source, the gateway's own records), and with virtual addressing an invalid one would choose
        the host this request, signed with the gateway's credentials, is sent to. Checked here, before any I/O."""
        if bucket is not None:
            check_bucket(bucket)
        key_path = quote(check_key(key), safe=_SAFE_PATH) if key is not None else ""
        if bucket is None:
            return self._netloc, self._base_path + "/"
        if self._virtual:
            return f"{bucket}.{self._netloc}", self._base_path + "/" + key_path
        path = f"{self._base_path}/{quote(bucket, safe=_SAFE_QUERY)}"
        return self._netloc, path + ("/" + key_path if key is not None else "")

    async def request(self, method: str, bucket: str | None, key: str | None, query: Sequence[tuple[str, str]] = (),
                      headers: dict[str, str] | None = None, body: bytes | AsyncIterable[bytes] | None = None,
                      content_length: int | None = None, payload_hash: str = UNSIGNED_PAYLOAD,
                      ) -> aiohttp.ClientResponse:
        assert self._session is not None, "start() first"
        host, raw_path = self._target(bucket, key)
        raw_query = encode_query(sorted(query))
        out = {k.lower(): v for k, v in (headers or {}).items()}
        out["host"] = host
        if isinstance(body, (bytes, bytearray)):
            content_length = len(body)
        if content_length is not None and (content_length > 0 or method in ("PUT", "POST")):
            out["content-length"] = str(content_length)
        credentials = await self._credentials.get()
        out.update(sign_request(method, raw_path, raw_query, out, payload_hash, credentials, self.region,
                                datetime.datetime.now(datetime.timezone.utc)))
        url = URL(f"{self._scheme}://{host}{raw_path}" + (f"?{raw_query}" if raw_query else ""), encoded=True)
        started = time.perf_counter()
        pool = _PoolWait()
        try:
            response = await self._session.request(method, url, headers=out, data=body, allow_redirects=False,
                                                   compress=None, chunked=None, trace_request_ctx=pool)
        except STORE_FAULTS as exc:
            self._metrics.upstream_requests.labels(method, "error").inc()
            if pool.queued:
                self._metrics.overload_rejections.labels("upstream_connections").inc()
            raise store_fault(exc, pool_exhausted=pool.queued) from None
        finally:
            self._metrics.upstream_duration.labels(method).observe(time.perf_counter() - started)
        self._metrics.upstream_requests.labels(method, f"{response.status // 100}xx").inc()
        upstream_request_id.set(response.headers.get("x-amz-request-id"))
        return response
