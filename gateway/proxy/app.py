"""The S3 front door (aiohttp): request id, authentication, routing, errors as S3 XML. Handlers stream."""
from __future__ import annotations

import datetime
from collections.abc import Mapping
import logging
import secrets
import time

from aiohttp import HttpVersion11, web
from multidict import CIMultiDict

from gateway import errors
from gateway.observability.logs import upstream_request_id
from gateway.proxy.context import Gateway
from gateway.proxy.download import get_object
from gateway.proxy.copy import copy_object
from gateway.proxy.multipart import (abort_multipart_upload, complete_multipart_upload, create_multipart_upload,
                                     list_parts, upload_part, upload_part_copy)
from gateway.proxy.passthrough import delete_bucket, list_objects, pass_through
from gateway.proxy.protocol import check_header_section
from gateway.proxy.responses import ABORTED, error_response
from gateway.proxy.upload import put_object
from gateway.proxy.uploadstate import is_reserved_key
from gateway.s3.addressing import Target, parse_query, resolve
from gateway.s3.copy import parse_copy_source
from gateway.s3.operations import Handling, classify
from gateway.s3.sigv2 import is_presigned_v2, verify_presigned_v2
from gateway.s3.sigv4 import VerifiedRequest, verify_request

log = logging.getLogger("gateway.access")

GATEWAY = web.AppKey("gateway", Gateway)
_AUTH = "envelope.auth"
_OPERATION = "envelope.operation"
_REQUEST_ID = "envelope.request_id"
_STARTED = "envelope.started"


def _authenticate(gw: Gateway, request: web.Request) -> tuple[Target, VerifiedRequest]:
    if _AUTH in request:
        return request[_AUTH]
    # The Host header itself (what the client signed), not request.host: aiohttp substitutes the authority of an
    # absolute-form target or the socket's address for it.
    target = resolve(request.raw_path, request.headers.get("Host"), gw.virtual_host_domains)
    now = datetime.datetime.now(datetime.timezone.utc)
    try:
        raw_params = parse_query(target.raw_query)
        if is_presigned_v2(dict(raw_params)) and "Authorization" not in request.headers:
            verified = verify_presigned_v2(request.method, target.raw_path, raw_params, list(request.headers.items()),
                                           target.bucket if target.virtual_hosted else None, gw.secret_for, now)
        else:
            verified = verify_request(request.method, target.raw_path, target.raw_query,
                                      list(request.headers.items()), gw.secret_for, now, gw.max_skew_seconds)
    except errors.S3Error as exc:
        gw.metrics.auth_failures.labels(exc.code).inc()
        raise
    request[_AUTH] = (target, verified)
    return target, verified


async def _expect_handler(request: web.Request) -> web.StreamResponse | None:
    """`Expect: 100-continue`: authenticate before the client sends its body, and refuse without reading it."""
    if request.headers.get("Expect", "").lower() != "100-continue" or request.version != HttpVersion11:
        return None  # S3 ignores Expect values it does not know (aiohttp's default would answer 417)
    gw = request.app[GATEWAY]
    try:
        check_header_section(request.raw_headers)
        _authenticate(gw, request)
    except errors.S3Error as exc:
        request_id = _request_id(request)
        gw.metrics.requests.labels("Unauthenticated", str(exc.status)).inc()
        # The body is never read: _close_if_body_unread closes the connection after this answer.
        return error_response(exc, request.path, request_id)
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0
    return None


def _request_id(request: web.Request) -> str:
    if _REQUEST_ID not in request:
        request[_REQUEST_ID] = secrets.token_hex(8).upper()
    return request[_REQUEST_ID]


async def _handle(request: web.Request) -> web.StreamResponse:
    target, verified = _authenticate(request.app[GATEWAY], request)
    if not target.hoisted_headers:
        return await _dispatch(request, request, target, verified)
    # The handlers read headers from the request: give them one whose headers include the hoisted ones. A flag a
    # handler sets on it (a broken connection) is reported through the original, which the middleware logs.
    handled = request.clone(headers=_with_hoisted(request.headers, target.hoisted_headers))
    try:
        return await _dispatch(request, handled, target, verified)
    finally:
        if handled.get(ABORTED):
            request[ABORTED] = True


def _with_hoisted(headers: Mapping[str, str], hoisted: tuple[tuple[str, str], ...]) -> CIMultiDict[str]:
    merged = CIMultiDict(headers)
    for name, value in hoisted:
        if merged.get(name, value) != value:
            raise errors.InvalidArgument(f"{name} is given both as a header and in the query string, differently.",
                                         ArgumentName=name)
        merged[name] = value
    return merged


async def _dispatch(request: web.Request, handled: web.Request, target: Target, verified: VerifiedRequest
                    ) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    operation = classify(handled.method, target.bucket, target.key, target.query_map, handled.headers)
    request[_OPERATION] = operation.name
    if operation.handling is Handling.REFUSE:
        raise operation.error or errors.NotImplementedS3()
    copy_source = handled.headers.get("x-amz-copy-source")
    gw.policy_for(verified.access_key_id).check(
        operation.name, operation.bucket,
        parse_copy_source(copy_source).bucket if copy_source and operation.handling in _COPIES else None)
    if is_reserved_key(target.key):
        # The gateway's own records of in-progress uploads (wrapped keys, part salts): not the clients' to
        # read, overwrite or delete.
        raise errors.AccessDenied("This key name is reserved by the encryption gateway.")
    handler = _HANDLERS.get(operation.handling)
    if handler is not None:
        return await handler(gw, handled, target, verified)
    if operation.handling in (Handling.GET_OBJECT, Handling.HEAD_OBJECT):
        return await get_object(gw, handled, target, verified.access_key_id,
                                head=operation.handling is Handling.HEAD_OBJECT)
    return await pass_through(gw, handled, target, verified, operation)


_COPIES = (Handling.COPY_OBJECT, Handling.UPLOAD_PART_COPY)

_HANDLERS = {
    Handling.PUT_OBJECT: put_object,
    Handling.LIST_OBJECTS: list_objects,
    Handling.CREATE_MULTIPART: create_multipart_upload,
    Handling.UPLOAD_PART: upload_part,
    Handling.COMPLETE_MULTIPART: complete_multipart_upload,
    Handling.ABORT_MULTIPART: abort_multipart_upload,
    Handling.LIST_PARTS: list_parts,
    Handling.UPLOAD_PART_COPY: upload_part_copy,
    Handling.COPY_OBJECT: copy_object,
    Handling.DELETE_BUCKET: delete_bucket,
}


@web.middleware
async def _s3_errors(request: web.Request, handler) -> web.StreamResponse:
    """Every failure becomes the S3 error document a client expects; never a traceback."""
    gw = request.app[GATEWAY]
    request_id = _request_id(request)
    started = request[_STARTED] = time.perf_counter()
    gw.metrics.inflight.inc()
    gw.inflight += 1
    status: int | str = 500
    try:
        try:
            check_header_section(request.raw_headers)
            response = await handler(request)
        except errors.S3Error as exc:
            if exc.status >= 500:
                log.warning("request %s failed: %s %s", request_id, exc.code, exc.message)
            response = error_response(exc, request.path, request_id, head=request.method == "HEAD")
            if isinstance(exc, errors.RequestHeaderSectionTooLarge):
                response.force_close()  # as for malformed HTTP: nothing more is read from this client
        except web.HTTPException:
            raise
        except Exception:
            log.exception("request %s failed with an unexpected error", request_id)
            response = error_response(errors.InternalError(), request.path, request_id,
                                      head=request.method == "HEAD")
        if not response.prepared:
            response.headers["x-amz-request-id"] = request_id
        status = "aborted" if request.get(ABORTED) else response.status
        return response
    finally:
        operation = request.get(_OPERATION, "Unknown")
        elapsed = time.perf_counter() - started
        gw.metrics.inflight.dec()
        gw.inflight -= 1
        gw.metrics.requests.labels(operation, str(status)).inc()
        gw.metrics.request_duration.labels(operation).observe(elapsed)
        target_and_auth = request.get(_AUTH)
        log.info("%s %s %s", request.method, operation, status, extra={"fields": {
            "request_id": request_id, "operation": operation, "status": status, "method": request.method,
            "duration_seconds": round(elapsed, 6), "remote": request.remote,
            "principal": target_and_auth[1].access_key_id if target_and_auth else None,
            "bucket": target_and_auth[0].bucket if target_and_auth else None,
            "key": target_and_auth[0].key if target_and_auth else None,
            "upstream_request_id": upstream_request_id.get()}})


async def _first_byte(request: web.Request, _: web.StreamResponse) -> None:
    if _STARTED in request:
        request.app[GATEWAY].metrics.time_to_first_byte.labels(request.get(_OPERATION, "Unknown")).observe(
            time.perf_counter() - request[_STARTED])


async def _close_if_body_unread(request: web.Request, response: web.StreamResponse) -> None:
    """An answer sent before the request's body has fully arrived (an early refusal, above all of an `Expect:
    100-continue` request whose body the client holds back) closes the connection: otherwise the client's next
    request would be read as the rest of this body (RFC 9110 §10.1.1). S3 closes too."""
    if not request.content.is_eof():
        response.force_close()
        # Said as well: aiohttp derives the Connection header before this hook runs.
        response.headers["Connection"] = "close"


def build_app(gw: Gateway) -> web.Application:
    app = web.Application(middlewares=[_s3_errors], client_max_size=1024**2)
    app[GATEWAY] = gw
    app.on_response_prepare.append(_first_byte)
    app.on_response_prepare.append(_close_if_body_unread)
    # `[\s\S]`, not `.`: S3 keys may contain newlines (`%0A`), and `.` does not match them.
    app.router.add_route("*", r"/{tail:[\s\S]*}", _handle, expect_handler=_expect_handler)
    return app
