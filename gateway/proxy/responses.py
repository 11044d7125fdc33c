"""Responses the gateway builds: S3 error XML, relayed upstream errors, the SSE headers of encrypted objects."""
from __future__ import annotations

import aiohttp
from aiohttp import web

from gateway import errors
from gateway.proxy.headers import client_response_headers
from gateway.proxy.storefaults import store_refusal
from gateway.s3.multipart_xml import without_checksums
from gateway.s3.xml import error_body, parse_error

# Set on a request whose response had started when it failed; its connection was aborted.
ABORTED = "envelope.aborted"

# Upstream error documents are small; a larger body is not an S3 error document and is not relayed whole.
_MAX_ERROR_BODY_BYTES = 64 * 1024
# A CompleteMultipartUpload or CopyObject result is a few hundred bytes (plus S3's whitespace keep-alive padding).
_MAX_RESULT_BODY_BYTES = 1024 * 1024


def sse_headers(kms_key_id: str) -> dict[str, str]:
    """What S3 says about SSE-KMS objects: their ETag is not the MD5 of the plaintext, and clients know that."""
    return {"x-amz-server-side-encryption": "aws:kms", "x-amz-server-side-encryption-aws-kms-key-id": kms_key_id}


def error_response(exc: errors.S3Error, resource: str, request_id: str, head: bool = False) -> web.Response:
    headers = {"x-amz-request-id": request_id}
    if head:
        # HEAD responses carry no body; S3 puts the code in a header for them.
        return web.Response(status=exc.status, headers={**headers, "x-amz-error-code": exc.code})
    body = error_body(exc.code, exc.message, resource, request_id, exc.fields)
    return web.Response(status=exc.status, body=body, headers={**headers, "Content-Type": "application/xml"})


async def relay_upstream_error(response: aiohttp.ClientResponse) -> web.Response:
    """An upstream 3xx/4xx/5xx, passed on: its status, its (small) XML body, none of its ciphertext headers."""
    body = await read_upto(response, _MAX_ERROR_BODY_BYTES)
    document = parse_error(body)
    if body.strip() and document is None:
        # Not an S3 error document the gateway can read (nested past any depth S3 writes, say): relayed, it
        # would break the client's parser; it is the store's fault, and retryable.
        raise errors.UpstreamError("The object store returned an error the gateway could not read.")
    refusal = store_refusal(document[0] if document else None)
    if refusal is not None:
        raise refusal
    headers = client_response_headers(response.headers)
    return web.Response(status=response.status, body=body or None, headers=headers)


async def read_upto(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, or its first `limit` bytes. (StreamReader.read(n) returns what is buffered, possibly fewer than
    n bytes before the end: one call is not "the body".)"""
    data = bytearray()
    while len(data) < limit:
        chunk = await response.content.read(limit - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


async def result_document(response: aiohttp.ClientResponse, what: str
                          ) -> tuple[web.Response | None, bytes, dict[str, str]]:
    """The store's result document (CompleteMultipartUpload, CopyObject), without its ciphertext checksums, and
    the headers for the client; or, first, the error response to relay — S3 may report a failure of these in
    the body of a 200 (clients know to read it), which is then relayed as it came."""
    async with response:
        if response.status != 200:
            return await relay_upstream_error(response), b"", {}
        body = await read_upto(response, _MAX_RESULT_BODY_BYTES + 1)
        if len(body) > _MAX_RESULT_BODY_BYTES:
            raise errors.UpstreamError("The object store's result document is larger than any S3 writes.")
        headers = client_response_headers(response.headers)
    document = parse_error(body)
    if document is not None:
        refusal = store_refusal(document[0])
        if refusal is not None:
            raise refusal
        return web.Response(status=200, body=body, headers=headers), b"", {}
    return None, without_checksums(body, what), headers


def abort(request: web.Request) -> None:
    """Break the client connection mid-response: a failure after the status line must never look like a clean
    end of body. The caller then returns the prepared response; aiohttp's write_eof on the dead transport is a
    no-op it already handles."""
    request[ABORTED] = True
    if request.transport is not None:
        request.transport.abort()
