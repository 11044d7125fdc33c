"""CopyObject: a server-side copy in the store, with the data key re-wrapped for the new name.

No object byte crosses the gateway. The DEK is wrapped under an encryption context that names the object
(docs/FORMAT.md §8), so the copy gets a new wrapped copy from KMS ReEncrypt (the plaintext key never leaves
KMS); header, commitment and body stay as they are. The store is always told REPLACE, with the metadata the
client's directive asks for plus the new envelope. A multipart-layout source is copied part by part at its
stored part boundaries, so the copy's bytes, part count and ETag are the source's.
"""
from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from gateway import errors
from gateway.format.envelope import (FLAG_MULTIPART_LAYOUT, Header, WrappedKey, encryption_context, metadata_for,
                                     open_multipart_keys, parse_metadata)
from gateway.format.multipart import store_part_ranges
from gateway.proxy.context import Gateway
from gateway.proxy.headers import CLIENT_SSE_HEADERS, client_response_headers, forwardable_request_headers
from gateway.proxy.objectreader import ObjectReader, PlaintextBody, UpstreamAnswer
from gateway.proxy.passthrough import read_control_body
from gateway.proxy.responses import read_upto, relay_upstream_error, result_document, sse_headers
from gateway.proxy.upload import (MAX_SINGLE_PUT_PLAINTEXT_BYTES, new_object, reserved_metadata_bytes,
                                  seal_client_body, send_sealed)
from gateway.proxy.uploadstate import is_reserved_key
from gateway.s3.addressing import Target
from gateway.s3.copy import CopySource, metadata_directive, parse_copy_source, source_conditions
from gateway.s3.metadata import META_PREFIX, RESERVED_PREFIX, check_client_metadata, envelope_fields
from gateway.s3.multipart_xml import (complete_request_body, http_date_iso, multipart_part_count, normalise_etag,
                                      parse_upload_id, result_etag)
from gateway.s3.sigv4 import VerifiedRequest
from gateway.s3.xml import DECLARATION, S3_NAMESPACE, parse_error, tagging_header

log = logging.getLogger(__name__)

# What COPY carries over from the source besides user metadata (S3 copies these with the object).
_COPIED_HEADERS = ("content-type", "content-encoding", "content-disposition", "content-language", "cache-control",
                   "expires", "x-amz-website-redirect-location")
# UploadPartCopy requests of one multipart copy in flight at once.
_PARALLEL_PART_COPIES = 4
# A tag set holds at most 10 tags of 128 + 256 characters.
_MAX_TAGGING_BYTES = 64 * 1024


async def copy_object(gw: Gateway, request: web.Request, target: Target, verified: VerifiedRequest
                      ) -> web.Response:
    assert target.bucket is not None and target.key is not None
    source = parse_copy_source(request.headers["x-amz-copy-source"])
    if is_reserved_key(source.key):
        raise errors.AccessDenied("This key name is reserved by the encryption gateway.")
    directive = metadata_directive(request.headers.get("x-amz-metadata-directive"))
    await read_control_body(gw, request, verified)
    headers = {name: value for name, value in forwardable_request_headers(request.headers.items()).items()
               if not name.startswith("x-amz-copy-source") and name != "x-amz-metadata-directive"
               and name not in CLIENT_SSE_HEADERS}
    if any(name.startswith("x-amz-server-side-encryption-customer-") for name in headers):
        raise errors.NotImplementedS3("SSE-C is not supported: the gateway encrypts objects itself.")
    # Asking for encryption is a change S3 accepts for a copy onto itself (the copy re-wraps the data key anyway).
    reencrypt = "x-amz-server-side-encryption" in request.headers

    head = await _head_source(gw, source, source_conditions(request.headers))
    fields = envelope_fields(head)
    # An object written around the gateway, in a bucket opted in to plaintext reads: its copy is encrypted (which
    # also makes a copy onto itself legal: it changes the object's encryption, as S3 allows).
    plaintext = not fields and gw.reads_plaintext(source.bucket)
    if not plaintext:
        envelope, wrapped = parse_metadata(fields)
    if directive == "COPY":
        changes_storage = any(name in headers for name in ("x-amz-storage-class", "x-amz-website-redirect-location"))
        if (source.bucket, source.key, source.version_id) == (target.bucket, target.key, None) and not reencrypt \
                and not plaintext and not changes_storage:
            raise errors.InvalidRequest(
                "This copy request is illegal because it is trying to copy an object to itself without changing "
                "the object's metadata, storage class, website redirect location or encryption attributes.")
        headers = {name: value for name, value in headers.items()
                   if not name.startswith(META_PREFIX) and name not in _COPIED_HEADERS}
        headers.update({name.lower(): value for name, value in head.items()
                        if (name.lower().startswith(META_PREFIX) and not name.lower().startswith(RESERVED_PREFIX))
                        or name.lower() in _COPIED_HEADERS})
    else:
        check_client_metadata(request.headers, reserved_bytes=reserved_metadata_bytes(gw))
    etag = head.get("ETag", "")
    if plaintext:
        failed, body, out, key_id = await _encrypt_plaintext_source(gw, source, target, headers, etag,
                                                                    verified.access_key_id)
        if failed is not None:
            return failed
        out.update(sse_headers(key_id))
        return _copy_response(body, out, source)
    rewrapped = await gw.keys.rewrap(wrapped, encryption_context(source.bucket, source.key),
                                     encryption_context(target.bucket, target.key), verified.access_key_id)
    for name, value in metadata_for(envelope, rewrapped).items():
        headers["x-amz-meta-" + name] = value

    if envelope.flags & FLAG_MULTIPART_LAYOUT:
        body, out = await _copy_in_parts(gw, source, target, headers, etag, int(head.get("Content-Length", "0")),
                                         envelope, wrapped, verified)
    else:
        headers.update({"x-amz-metadata-directive": "REPLACE", "x-amz-copy-source": source.header_value(),
                        # Pinned to the object whose metadata was just read and re-wrapped.
                        "x-amz-copy-source-if-match": etag})
        response = await gw.upstream.request("PUT", target.bucket, target.key, [], headers, body=b"")
        failed, body, out = await result_document(response, "CopyObject response")
        if failed is not None:
            return failed
    out.update(sse_headers(rewrapped[0].key_id))
    return _copy_response(body, out, source)


def _copy_response(body: bytes, out: dict[str, str], source: CopySource) -> web.Response:
    if source.version_id:
        out["x-amz-copy-source-version-id"] = source.version_id
    return web.Response(status=200, body=body, headers={**out, "Content-Type": "application/xml"})


def _copy_result(etag: str) -> bytes:
    result = (f'<CopyObjectResult xmlns="{S3_NAMESPACE}"><LastModified>{http_date_iso(time.time())}</LastModified>'
              f'<ETag>"{etag}"</ETag></CopyObjectResult>')
    return DECLARATION + result.encode()


async def _encrypt_plaintext_source(gw: Gateway, source: CopySource, target: Target, headers: dict[str, str],
                                    etag: str, principal: str
                                    ) -> tuple[web.Response | None, bytes, dict[str, str], str]:
    """Copy an object written around the gateway (migration): its bytes pass through the gateway and are
    encrypted like a PutObject's, pinned to the ETag just seen. (One request: S3 copies at most 5 GiB in one
    CopyObject as well.) (the error response to relay or None, the result document, headers, KMS key)."""
    assert target.bucket is not None and target.key is not None
    if headers.pop("x-amz-tagging-directive", "COPY").upper() == "COPY":
        # The store copies tags itself only in a store-side copy; this is a new PUT.
        headers.pop("x-amz-tagging", None)
        tags = await _source_tags(gw, source)
        if tags:
            headers["x-amz-tagging"] = tags
    reader = ObjectReader(gw, source.bucket, source.key, principal, source.query(), conditions={"if-match": etag})
    try:
        try:
            plain = await reader.open()
        except UpstreamAnswer as answer:
            if answer.response.status == 412:
                raise errors.UpstreamError("The copy source changed while it was being copied; retry.") from None
            return await relay_upstream_error(answer.response), b"", {}, ""
        if plain.length > MAX_SINGLE_PUT_PLAINTEXT_BYTES:
            raise errors.InvalidRequest("The specified copy source is larger than the maximum allowable size for a "
                                        "copy source: 5368709120")
        assert plain.views is not None
        object_key, wrapped = await new_object(gw, target.bucket, target.key, principal, headers)
        sealed = await seal_client_body(gw, PlaintextBody(plain.views, plain.length), object_key)
        response = await send_sealed(gw, sealed, target.bucket, target.key, [], headers)
    finally:
        reader.close()
    async with response:
        if response.status != 200:
            return await relay_upstream_error(response), b"", {}, ""
        new_etag = normalise_etag(response.headers.get("ETag", ""))
        out = {name: value for name, value in client_response_headers(response.headers).items()
               if name.lower() != "etag"}  # in the result document: a CopyObject answer has no ETag header
    return None, _copy_result(new_etag), out, wrapped[0].key_id


async def _source_tags(gw: Gateway, source: CopySource) -> str:
    response = await gw.upstream.request("GET", source.bucket, source.key, [("tagging", ""), *source.query()])
    async with response:
        body = await read_upto(response, _MAX_TAGGING_BYTES)
        if response.status != 200:
            raise errors.UpstreamError("The object store did not give the copy source's tags.")
    return tagging_header(body)


async def _head_source(gw: Gateway, source: CopySource, conditions: dict[str, str]) -> dict[str, str]:
    response = await gw.upstream.request("HEAD", source.bucket, source.key, source.query(), conditions)
    async with response:
        if response.status in (304, 412):
            raise errors.PreconditionFailed()
        if response.status == 404:
            raise errors.NoSuchKey(Key=source.key)
        if response.status == 403:
            raise errors.AccessDenied()
        if response.status != 200:
            raise errors.UpstreamError("The object store did not describe the copy source.")
        return dict(response.headers)


async def _copy_in_parts(gw: Gateway, source: CopySource, target: Target, headers: dict[str, str], etag: str,
                         stored_total: int, envelope: Header, wrapped: list[WrappedKey], verified: VerifiedRequest
                         ) -> tuple[bytes, dict[str, str]]:
    """A multipart copy at the source's own stored part boundaries (from its part table), so the copy has the
    same bytes at the same boundaries: the same `-M` ETag, hence the same plaintext size in listings."""
    assert target.bucket is not None and target.key is not None
    reader = ObjectReader(gw, source.bucket, source.key, verified.access_key_id, source.query())
    try:
        keys = await gw.keys.open_keys(open_multipart_keys, envelope, wrapped,
                                       encryption_context(source.bucket, source.key), verified.access_key_id)
        table = await reader.part_table(keys, etag, stored_total, multipart_part_count(etag))
    finally:
        reader.close()
    response = await gw.upstream.request("POST", target.bucket, target.key, [("uploads", "")], headers, body=b"")
    async with response:
        if response.status != 200:
            raise errors.UpstreamError("The object store refused to start the copy.")
        upload_id = parse_upload_id(await response.read())
    try:
        limit = asyncio.Semaphore(_PARALLEL_PART_COPIES)
        ranges = store_part_ranges(table.stored_part_sizes())

        async def copy_part(number: int) -> tuple[int, str]:
            first, last = ranges[number - 1]
            async with limit:
                part_headers = {"x-amz-copy-source": source.header_value(), "x-amz-copy-source-if-match": etag,
                                "x-amz-copy-source-range": f"bytes={first}-{last}"}
                part = await gw.upstream.request("PUT", target.bucket, target.key,
                                                 [("partNumber", str(number)), ("uploadId", upload_id)],
                                                 part_headers, body=b"")
                async with part:
                    body = await part.read()
                    if part.status != 200 or parse_error(body) is not None:
                        raise errors.UpstreamError("The object store failed a part of the copy.")
                return number, result_etag(body, "UploadPartCopy response")

        parts = await asyncio.gather(*(copy_part(n) for n in range(1, len(ranges) + 1)))
        data = complete_request_body(sorted(parts))
        response = await gw.upstream.request("POST", target.bucket, target.key, [("uploadId", upload_id)],
                                             body=data)
        async with response:
            body = await response.read()
            if response.status != 200 or parse_error(body) is not None:
                raise errors.UpstreamError("The object store failed to complete the copy.")
            out = client_response_headers(response.headers)
    except BaseException:
        await _abort(gw, target, upload_id)
        raise
    return _copy_result(result_etag(body, "CompleteMultipartUpload response")), out


async def _abort(gw: Gateway, target: Target, upload_id: str) -> None:
    assert target.bucket is not None and target.key is not None
    try:
        response = await gw.upstream.request("DELETE", target.bucket, target.key, [("uploadId", upload_id)])
        response.close()
    except errors.S3Error:
        log.warning("could not abort the store-side upload of a failed copy")

