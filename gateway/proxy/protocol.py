"""The HTTP front door below the application: aiohttp's request handler with S3's limits on request heads.

- A request head must arrive within `timeouts.request_head_seconds`: from accepting the connection, from its
  first byte after a response, or — for a head pipelined behind a request — from the end of that response. A
  connection idle between requests (nothing sent) keeps aiohttp's keep-alive timeout. A head that times out
  closes the connection without an answer: a response could be read as the answer to a later request.
- A head is at most `MAX_REQUEST_LINE_BYTES` of request line and `MAX_HEADER_SECTION_BYTES` of header fields
  (S3: 8 KiB, 400 RequestHeaderSectionTooLarge). Counting happens while the head arrives, so a head trickled in
  is refused before it ends and never grows past the cap.
- HTTP aiohttp cannot parse is answered with S3 error XML (400 BadRequest), never with aiohttp's plain-text page
  that echoes the request bytes, and the connection is closed; the log names the error's class, never its text
  (which quotes the request, e.g. an Authorization header).

The hooks are aiohttp's own seams: `RequestHandler.handle_error` and `finish_response`, the `Server` factory,
and the request parser's `feed_data` (seen through a wrapper that only watches and counts).
"""
from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler

from gateway import errors
from gateway.observability.logs import Occasional
from gateway.observability.metrics import Metrics
from gateway.proxy.responses import error_response

log = logging.getLogger(__name__)

# S3's limit on the header fields of a request.
MAX_HEADER_SECTION_BYTES = 8 * 1024
# The request line (method, URL, version) is not part of the header section. Presigned URLs carry their
# signature and often long response-header overrides in the query: 16 KiB leaves room for URLs of 8 KiB and more.
MAX_REQUEST_LINE_BYTES = 16 * 1024
# aiohttp's per-field limits, set so that they cannot refuse what the section limit allows: one field may fill the
# section, and the smallest field ("a:" CRLF) takes 4 bytes of it.
MAX_FIELD_BYTES = MAX_HEADER_SECTION_BYTES
MAX_HEADERS = MAX_HEADER_SECTION_BYTES // 4
# Bytes of one head, counted as they arrive: the request line, the section, their line ends, the blank line.
_MAX_HEAD_BYTES = MAX_REQUEST_LINE_BYTES + MAX_HEADER_SECTION_BYTES + 4


def header_section_bytes(raw_headers: tuple[tuple[bytes, bytes], ...]) -> int:
    """The size of a parsed head's header fields as sent ("name: value" CRLF each)."""
    return sum(len(name) + len(value) + 4 for name, value in raw_headers)


def check_header_section(raw_headers: tuple[tuple[bytes, bytes], ...]) -> None:
    """A head that arrived whole in one read is only measured once parsed: refuse it here as S3 does."""
    if header_section_bytes(raw_headers) > MAX_HEADER_SECTION_BYTES:
        raise _too_large()


def _too_large() -> errors.RequestHeaderSectionTooLarge:
    return errors.RequestHeaderSectionTooLarge(MaxSizeAllowed=str(MAX_HEADER_SECTION_BYTES))


class HeadTooLarge(BadHttpMessage):
    """Raised from the parser wrapper: aiohttp then answers it (through handle_error) in the request's turn."""

    def __init__(self) -> None:
        super().__init__("request head too large")


@dataclass
class Edge:
    """What every client connection shares: the head timeout, the metrics, and the (rate-limited) reports."""
    head_timeout_seconds: float
    keepalive_seconds: float
    metrics: Metrics
    head_timeouts_log: Occasional
    malformed_log: Occasional

    @classmethod
    def create(cls, head_timeout_seconds: float, keepalive_seconds: float, metrics: Metrics) -> Edge:
        return cls(head_timeout_seconds, keepalive_seconds, metrics, Occasional(log), Occasional(log))

    def handler_args(self) -> dict[str, Any]:
        return {"max_line_size": MAX_REQUEST_LINE_BYTES, "max_field_size": MAX_FIELD_BYTES,
                "max_headers": MAX_HEADERS, "keepalive_timeout": self.keepalive_seconds}


class _WatchedParser:
    """aiohttp's request parser, watched: which bytes belong to a request head, when a head completes, and how
    large the current one has grown. Everything but feed_data passes through unchanged."""

    def __init__(self, parser: Any, head_started: Callable[[], None], heads_completed: Callable[[int], None]):
        self._parser = parser
        self._head_started = head_started
        self._heads_completed = heads_completed
        self._payload: Any = None  # the body stream of the last head parsed
        self._head_bytes = 0
        self._failed = False

    def feed_data(self, data: bytes, *args: Any, **kwargs: Any) -> Any:
        if self._failed:
            # After a parse error the connection answers once and closes: nothing later is parsed (or echoed).
            return (), False, b""
        # Bytes that arrive while the last request's body is incomplete are body bytes, not a head. (Where one
        # read holds the end of a Content-Length body and the start of a pipelined head, that head is not timed
        # here: it falls to the keep-alive timeout, as a connection idle between requests does.)
        in_body = self._payload is not None and not self._payload.is_eof()
        try:
            messages, upgraded, tail = self._parser.feed_data(data, *args, **kwargs)
        except HttpProcessingError as exc:
            self._failed = True
            self._heads_completed(1)  # aiohttp answers the error as one more request
            if not in_body and self._head_bytes + len(data) > MAX_HEADER_SECTION_BYTES:
                raise HeadTooLarge() from exc  # aiohttp's per-line or count limit, on a head that is too large
            raise
        if messages:
            message, self._payload = messages[-1]
            self._head_bytes = 0
            self._heads_completed(len(messages))
            if self._payload.is_eof() and _ends_in_crlfcrlf(message) and not data.endswith(b"\r\n\r\n"):
                self._head_started()  # the read went on past the last message: the start of the next head
        elif data and not in_body:
            self._head_bytes += len(data)
            if self._head_bytes > _MAX_HEAD_BYTES:
                self._failed = True
                self._heads_completed(1)
                raise HeadTooLarge()
            self._head_started()
        return messages, upgraded, tail

    def __getattr__(self, name: str) -> Any:
        return getattr(self._parser, name)


def _ends_in_crlfcrlf(message: Any) -> bool:
    """Whether the message's last bytes are CRLF CRLF: a head without a body, or a chunked body (its last chunk
    and trailers end so). Then a read ending elsewhere went on past the message."""
    return message.chunked or message.headers.get("Content-Length", "0") == "0"


class EdgeRequestHandler(RequestHandler):
    """One client connection."""

    def __init__(self, manager: web.Server, *, edge: Edge, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._edge = edge
        self._parser = _WatchedParser(self._parser, self._head_started, self._heads_completed)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_pending = False  # bytes of a head (or a fresh connection) and no complete head yet
        self._unanswered = 0  # heads parsed whose responses have not finished

    # --- the head timeout ---
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._head_started()  # a new connection owes a head at once

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _head_started(self) -> None:
        self._head_pending = True
        if self._unanswered == 0 and self._head_timer is None:
            self._head_timer = self._loop.call_later(self._edge.head_timeout_seconds, self._head_timed_out)

    def _heads_completed(self, count: int) -> None:
        self._head_pending = False
        self._unanswered += count
        self._stop_head_timer()

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._unanswered or not self._head_pending:
            return
        self._edge.metrics.request_head_timeouts.inc()
        self._edge.head_timeouts_log.warning(
            "closed %d connection(s) whose request head did not arrive within %ss "
            "(envelope_request_head_timeouts_total counts them)", self._edge.head_timeout_seconds)
        self.force_close()

    async def finish_response(self, request: Any, resp: web.StreamResponse, start_time: float | None
                              ) -> tuple[web.StreamResponse, bool]:
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self._unanswered = max(0, self._unanswered - 1)
            if self._unanswered == 0 and self._head_pending:
                # A head pipelined behind this request: its time starts now, at the end of the response.
                self._stop_head_timer()
                self._head_started()

    # --- malformed HTTP ---
    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:
            # As aiohttp: a response has started, the connection can only be broken.
            raise ConnectionError("the response had started when the request failed")
        error = _s3_error(status, exc)
        self._edge.metrics.malformed_requests.labels(error.code).inc()
        # The class only: aiohttp's messages quote the request bytes (headers, signatures).
        self._edge.malformed_log.warning("refused %d malformed request(s); the last: %s (%s)", error.code,
                                         type(exc).__name__ if exc is not None else status)
        response = error_response(error, "/", secrets.token_hex(8).upper())
        response.force_close()
        response.headers["Connection"] = "close"
        return response


def _s3_error(status: int, exc: BaseException | None) -> errors.S3Error:
    if status >= 500:
        return errors.InternalError()
    if isinstance(exc, (HeadTooLarge, LineTooLong)):
        return _too_large()
    return errors.BadRequest()


class EdgeServer(web.Server):
    """aiohttp's server, making EdgeRequestHandler connections."""

    def __init__(self, handler: Any, *, edge: Edge, request_factory: Any = None, handler_cancellation: bool = False,
                 loop: asyncio.AbstractEventLoop | None = None, **handler_args: Any) -> None:
        super().__init__(handler, request_factory=request_factory, handler_cancellation=handler_cancellation,
                         loop=loop, **handler_args)
        self._edge = edge
        self._edge_loop = loop or asyncio.get_running_loop()
        self._handler_args = handler_args

    def __call__(self) -> EdgeRequestHandler:
        return EdgeRequestHandler(self, loop=self._edge_loop, edge=self._edge, **self._handler_args)


class EdgeRunner(web.AppRunner):
    """An AppRunner whose server makes EdgeRequestHandler connections; `handler_args` are RequestHandler's."""

    def __init__(self, app: web.Application, *, edge: Edge, handler_args: Mapping[str, Any],
                 shutdown_timeout: float) -> None:
        super().__init__(app, shutdown_timeout=shutdown_timeout)
        self._edge = edge
        self._edge_handler_args = {**edge.handler_args(), **handler_args}

    async def _make_server(self) -> web.Server:
        # The application's own server (start-up hooks run, frozen), rebuilt as an EdgeServer around its handler.
        plain = await super()._make_server()
        return EdgeServer(plain.request_handler, edge=self._edge, request_factory=plain.request_factory,
                          handler_cancellation=plain.handler_cancellation, loop=asyncio.get_running_loop(),
                          **self._edge_handler_args)
