"""Multipart uploads: Create, UploadPart, Complete, Abort, ListParts. Stateless; see gateway.proxy.uploadstate.

Every part upload gets a fresh random salt and so a key of its own (docs/FORMAT.md, multipart layout): parts
are sealed as they stream, in parallel, in any order, on any replica, and a re-uploaded part number never
reuses a (key, nonce) pair. Complete writes the sealed part table (with the padding that makes the stored size
a function of the plaintext size) as the last stored part, or appended to the client's last part when that
one must stay last (it is < 5 MiB, or number 10,000).
"""
from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from urllib.parse import quote

from aiohttp import web

from gateway import errors
from gateway.format.envelope import (FLAG_MULTIPART_LAYOUT, PART_SALT_SIZE_BYTES, MultipartKeys,
                                     encryption_context, metadata_for, new_multipart_keys, open_multipart_keys,
                                     parse_metadata)
from gateway.format.multipart import MAX_PARTS, PartEntry, PartTable, max_trailer_size, seal_trailer
from gateway.format.sizes import ciphertext_size, largest_plaintext_within, plaintext_size
from gateway.proxy.body import ClientBody
from gateway.proxy.context import Gateway
from gateway.proxy.headers import client_response_headers, forwardable_request_headers, object_write_headers
from gateway.proxy.objectreader import ObjectReader, PlaintextBody, UpstreamAnswer
from gateway.proxy.passthrough import read_control_body
from gateway.proxy.responses import relay_upstream_error, result_document, sse_headers
from gateway.proxy.upload import (MAX_SINGLE_PUT_PLAINTEXT_BYTES, MAX_STORED_PUT_BYTES, reserved_metadata_bytes,
                                  seal_client_body, send_sealed)
from gateway.proxy.uploadstate import PartRecord, UploadState, is_reserved_key, stash_key
from gateway.s3.addressing import Target
from gateway.s3.copy import copy_range, parse_copy_source, source_conditions
from gateway.s3.metadata import check_client_metadata, envelope_fields
from gateway.s3.multipart_xml import (complete_request_body, complete_result, copy_part_result, http_date_iso,
                                      multipart_part_count, normalise_etag, parse_complete_request, parse_upload_id,
                                      result_etag)
from gateway.numerals import decimal
from gateway.s3.sigv4 import VerifiedRequest
from gateway.s3.xml import parse_error, rewrite_listing

log = logging.getLogger(__name__)

# S3's minimum for every part but the last, enforced at Complete on the *plaintext* sizes: the gateway's tags
# must neither lift a too-small part over the limit nor push a legal one under it.
MIN_PART_BYTES = 5 * 1024**2
# A part's ciphertext must fit S3's 5 GiB part limit, like a single PUT's; part 10,000 (always the last, so
# the part table is appended to it) must leave room for the largest table.
MAX_PART_PLAINTEXT_BYTES = MAX_SINGLE_PUT_PLAINTEXT_BYTES
MAX_LAST_PART_PLAINTEXT_BYTES = largest_plaintext_within(MAX_STORED_PUT_BYTES - max_trailer_size(MAX_PARTS))
# Complete forwards only these of the client's headers (conditional writes and ownership checks).
_COMPLETE_HEADERS = ("if-match", "if-none-match", "x-amz-expected-bucket-owner", "x-amz-request-payer")


def _upload_id(target: Target) -> str:
    upload_id = target.query_map.get("uploadId", "")
    if not upload_id:
        raise errors.InvalidArgument("The uploadId must not be empty.", ArgumentName="uploadId")
    return upload_id


def _part_number(target: Target) -> int:
    raw = target.query_map.get("partNumber", "")
    number = decimal(raw, cap=MAX_PARTS + 1)
    if number is None or not 1 <= number <= MAX_PARTS:
        raise errors.InvalidArgument("Part number must be an integer between 1 and 10000, inclusive.",
                                     ArgumentName="partNumber", ArgumentValue=raw)
    return number


async def create_multipart_upload(gw: Gateway, request: web.Request, target: Target,
                                  verified: VerifiedRequest) -> web.Response:
    assert target.bucket is not None and target.key is not None
    check_client_metadata(request.headers, reserved_bytes=reserved_metadata_bytes(gw))
    await read_control_body(gw, request, verified)
    headers = object_write_headers(request.headers.items())
    # One DEK per upload: every part's key is derived from it. Its wrapped copy and the header go into the
    # upload's metadata now — S3 fixes an object's metadata at CreateMultipartUpload.
    dek, wrapped = await gw.keys.generate(encryption_context(target.bucket, target.key), verified.access_key_id)
    header, _ = new_multipart_keys(dek)
    del dek
    for name, value in metadata_for(header, wrapped).items():
        headers["x-amz-meta-" + name] = value
    response = await gw.upstream.request("POST", target.bucket, target.key, target.query, headers, body=b"")
    async with response:
        if response.status != 200:
            return await relay_upstream_error(response)
        body = await response.read()
        out = client_response_headers(response.headers)
    upload_id = parse_upload_id(body)
    try:
        await gw.uploads.save(target.bucket, UploadState(target.key, upload_id, header, wrapped))
    except errors.S3Error:
        await _abort_upstream(gw, target.bucket, target.key, upload_id)
        raise
    out.update(sse_headers(wrapped[0].key_id))
    return web.Response(status=200, body=body, headers=out)


async def upload_part(gw: Gateway, request: web.Request, target: Target, verified: VerifiedRequest
                      ) -> web.Response:
    assert target.bucket is not None and target.key is not None
    number, upload_id = _part_number(target), _upload_id(target)
    headers = object_write_headers(request.headers.items())
    body = ClientBody(request, verified, gw)
    _check_part_size(number, body.length)
    state, keys = await gw.uploads.open(target.bucket, target.key, upload_id, verified.access_key_id)
    etag, echo = await _store_part(gw, target, upload_id, number, keys, body, headers)
    out = {"ETag": f'"{etag}"', **echo, **sse_headers(state.wrapped[0].key_id)}
    return web.Response(status=200, headers=out)


async def upload_part_copy(gw: Gateway, request: web.Request, target: Target, verified: VerifiedRequest
                           ) -> web.Response:
    """A part made of (a range of) another object: decrypted here and sealed again under this upload's key.
    The ciphertext cannot be copied store-side: the source has another DEK and other part keys."""
    assert target.bucket is not None and target.key is not None
    number, upload_id = _part_number(target), _upload_id(target)
    source = parse_copy_source(request.headers["x-amz-copy-source"])
    if is_reserved_key(source.key):
        raise errors.AccessDenied("This key name is reserved by the encryption gateway.")
    byte_range = copy_range(request.headers.get("x-amz-copy-source-range"))
    await read_control_body(gw, request, verified)
    headers = object_write_headers((name, value) for name, value in request.headers.items()
                                   if not name.lower().startswith("x-amz-copy-source"))
    state, keys = await gw.uploads.open(target.bucket, target.key, upload_id, verified.access_key_id)
    reader = ObjectReader(gw, source.bucket, source.key, verified.access_key_id, source.query(),
                          range_value=byte_range, conditions=source_conditions(request.headers))
    try:
        try:
            plain = await reader.open()
        except UpstreamAnswer as answer:
            if answer.response.status == 304:
                raise errors.PreconditionFailed(Condition="x-amz-copy-source-if-none-match") from None
            return await relay_upstream_error(answer.response)
        if byte_range is not None and plain.length != _range_length(byte_range):
            raise errors.InvalidRange()  # S3 refuses a copy range past the source's end; it does not clip it
        _check_part_size(number, plain.length)
        assert plain.views is not None
        etag, _ = await _store_part(gw, target, upload_id, number, keys, PlaintextBody(plain.views, plain.length),
                                    headers)
    finally:
        reader.close()
    body = copy_part_result(etag, http_date_iso(time.time()))
    return web.Response(status=200, body=body, headers={"Content-Type": "application/xml",
                                                        **sse_headers(state.wrapped[0].key_id)})


def _check_part_size(number: int, length: int) -> None:
    limit = MAX_LAST_PART_PLAINTEXT_BYTES if number == MAX_PARTS else MAX_PART_PLAINTEXT_BYTES
    if length > limit:
        raise errors.EntityTooLarge("The part's ciphertext would exceed S3's 5 GiB part limit; use smaller parts.",
                                    ProposedSize=str(length), MaxSizeAllowed=str(limit))


def _range_length(byte_range: str) -> int:
    first, _, last = byte_range.removeprefix("bytes=").partition("-")
    return int(last) - int(first) + 1


async def _store_part(gw: Gateway, target: Target, upload_id: str, number: int, keys: MultipartKeys,
                      body: ClientBody | PlaintextBody, headers: dict[str, str]) -> tuple[str, dict[str, str]]:
    """Seal a part under a fresh part key, store it, record it; (the store's ETag, checksum echo headers)."""
    assert target.bucket is not None and target.key is not None
    salt = secrets.token_bytes(PART_SALT_SIZE_BYTES)
    sealed = await seal_client_body(gw, body, keys.part_key(number, salt), number)
    query = [("partNumber", str(number)), ("uploadId", upload_id)]
    # A part that can only be the last one also goes to a stash: at Complete the part table is appended to it.
    stashed = body.length < MIN_PART_BYTES or number == MAX_PARTS
    if stashed:
        response = await send_sealed(gw, sealed, target.bucket, stash_key(upload_id, number, salt), [], {})
        async with response:
            if response.status != 200:
                raise errors.UpstreamError("The object store did not take the part.")
        etag = await _copy_stash_to_part(gw, target.bucket, target.key, upload_id, number,
                                         stash_key(upload_id, number, salt), headers)
    else:
        response = await send_sealed(gw, sealed, target.bucket, target.key, query, headers)
        async with response:
            if response.status == 404:
                raise errors.NoSuchUpload(UploadId=upload_id)
            if response.status != 200:
                raise errors.UpstreamError("The object store did not take the part.")
            etag = normalise_etag(response.headers.get("ETag", ""))
    if not etag:
        raise errors.UpstreamError("The object store returned no ETag for the part.")
    await gw.uploads.add_record(target.bucket, upload_id, PartRecord(number, etag, body.length, salt, stashed))
    return etag, sealed.state.echo_headers


async def _copy_stash_to_part(gw: Gateway, bucket: str, key: str, upload_id: str, number: int, source: str,
                              headers: dict[str, str]) -> str:
    """UploadPartCopy of the stash into the upload: the store holds the same bytes as the part (ListParts shows
    it, with the same ETag), and nothing crosses the network twice."""
    copy_headers = {name: value for name, value in headers.items() if name.startswith("x-amz-expected")}
    copy_headers["x-amz-copy-source"] = quote(f"{bucket}/{source}", safe="/")
    response = await gw.upstream.request("PUT", bucket, key, [("partNumber", str(number)), ("uploadId", upload_id)],
                                         copy_headers, body=b"")
    async with response:
        body = await response.read()
        status = response.status
    error = parse_error(body)
    if status == 200 and error is None:
        return result_etag(body, "UploadPartCopy response")
    # The part is not in the upload (aborted meanwhile, say, on another replica): its stash must not linger.
    await gw.uploads.delete_keys(bucket, [source])
    if status == 404 or (error is not None and error[0] == "NoSuchUpload") \
            or not await _upload_exists(gw, bucket, key, upload_id):
        raise errors.NoSuchUpload(UploadId=upload_id)
    raise errors.UpstreamError("The object store did not take the part.")


async def _upload_exists(gw: Gateway, bucket: str, key: str, upload_id: str) -> bool:
    response = await gw.upstream.request("GET", bucket, key, [("uploadId", upload_id), ("max-parts", "1")])
    response.close()
    return response.status != 404


async def complete_multipart_upload(gw: Gateway, request: web.Request, target: Target,
                                    verified: VerifiedRequest) -> web.StreamResponse:
    assert target.bucket is not None and target.key is not None
    upload_id = _upload_id(target)
    client_parts = parse_complete_request(await read_control_body(gw, request, verified))
    try:
        state, keys = await gw.uploads.open(target.bucket, target.key, upload_id, verified.access_key_id)
    except errors.NoSuchUpload:
        repeated = await _repeated_complete(gw, request, target, upload_id, client_parts, verified.access_key_id)
        if repeated is None:
            raise
        return repeated
    conditions = {name: request.headers[name] for name in _COMPLETE_HEADERS if name in request.headers}
    await _check_write_conditions(gw, target, conditions)
    records = await gw.uploads.records(target.bucket, upload_id)
    chosen: list[PartRecord] = []
    for number, etag in client_parts:
        record = records.get((number, etag))
        if record is None:
            raise errors.InvalidPart(PartNumber=str(number), ETag=etag)
        chosen.append(record)
    for record in chosen[:-1]:
        if record.size < MIN_PART_BYTES:
            raise errors.EntityTooSmall(ProposedSize=str(record.size), MinSizeAllowed=str(MIN_PART_BYTES),
                                        PartNumber=str(record.number))
    expected_size = request.headers.get("x-amz-mp-object-size")
    if expected_size is not None and expected_size.strip() != str(sum(r.size for r in chosen)):
        # The client's own total, in plaintext bytes (the store never sees it: its sizes are ciphertext).
        raise errors.InvalidRequest("The provided 'x-amz-mp-object-size' header value does not match the size of "
                                    "the object.")
    last = chosen[-1]
    table = PartTable(tuple(PartEntry(r.number, r.size, r.salt) for r in chosen),
                      len(chosen) if last.stashed else len(chosen) + 1)
    trailer = seal_trailer(keys, table)
    store_parts = [(r.number, r.etag) for r in chosen]
    if last.stashed:
        store_parts[-1] = (last.number, await _put_last_part(gw, target, upload_id, last, trailer))
    else:
        store_parts.append((last.number + 1, await _put_part(gw, target, upload_id, last.number + 1, trailer)))

    data = complete_request_body(store_parts)
    response = await gw.upstream.request("POST", target.bucket, target.key, [("uploadId", upload_id)], conditions,
                                         body=data, payload_hash=hashlib.sha256(data).hexdigest())
    failed, body, out = await result_document(response, "CompleteMultipartUpload response")
    if failed is not None:
        return failed
    await gw.uploads.forget(target.bucket, upload_id)
    out.update(sse_headers(state.wrapped[0].key_id))
    return web.Response(status=200, body=body, headers=out)


async def _repeated_complete(gw: Gateway, request: web.Request, target: Target, upload_id: str,
                             client_parts: list[tuple[int, str]], principal: str) -> web.Response | None:
    """S3 answers a CompleteMultipartUpload repeated after it succeeded (a client retrying after a lost
    response) with the result again. By then the gateway's records are gone; the upload counts as completed when
    the store no longer knows it and the object under its key has the multipart layout with exactly the client's
    part numbers in its sealed part table. None: not recognisably completed (the caller answers NoSuchUpload)."""
    assert target.bucket is not None and target.key is not None
    if await _upload_exists(gw, target.bucket, target.key, upload_id):
        return None
    head = await gw.upstream.request("HEAD", target.bucket, target.key)
    head.close()
    if head.status != 200:
        return None
    try:
        envelope, wrapped = parse_metadata(envelope_fields(head.headers))
    except errors.S3Error:
        return None
    if not envelope.flags & FLAG_MULTIPART_LAYOUT:
        return None
    etag = head.headers.get("ETag", "")
    reader = ObjectReader(gw, target.bucket, target.key, principal, [])
    try:
        keys = await gw.keys.open_keys(open_multipart_keys, envelope, wrapped,
                                       encryption_context(target.bucket, target.key), principal)
        table = await reader.part_table(keys, etag, int(head.headers.get("Content-Length", "0")),
                                        multipart_part_count(etag))
    finally:
        reader.close()
    if [part.number for part in table.parts] != [number for number, _ in client_parts]:
        return None
    location = f"{request.scheme}://{request.host}/{quote(target.bucket)}/{quote(target.key)}"
    return web.Response(status=200, body=complete_result(location, target.bucket, target.key, normalise_etag(etag)),
                        headers={"Content-Type": "application/xml", **sse_headers(wrapped[0].key_id)})


async def _check_write_conditions(gw: Gateway, target: Target, conditions: dict[str, str]) -> None:
    """If-Match / If-None-Match of a Complete, checked before the part table is written (the store checks them
    again, atomically, at Complete): a write that cannot succeed leaves no part behind."""
    assert target.bucket is not None and target.key is not None
    wanted = {name: conditions[name] for name in ("if-match", "if-none-match") if name in conditions}
    if not wanted:
        return
    response = await gw.upstream.request("HEAD", target.bucket, target.key, [], wanted)
    response.close()
    if response.status in (304, 412):
        raise errors.PreconditionFailed(Condition=", ".join(sorted(wanted)))
    if response.status == 404 and "if-match" in wanted:
        raise errors.NoSuchKey(Key=target.key)


async def _put_part(gw: Gateway, target: Target, upload_id: str, number: int, data: bytes) -> str:
    assert target.bucket is not None and target.key is not None
    response = await gw.upstream.request("PUT", target.bucket, target.key,
                                         [("partNumber", str(number)), ("uploadId", upload_id)], body=data)
    async with response:
        if response.status != 200:
            raise errors.UpstreamError("The object store did not take the part table.")
        return normalise_etag(response.headers.get("ETag", ""))


async def _put_last_part(gw: Gateway, target: Target, upload_id: str, last: PartRecord, trailer: bytes) -> str:
    """Re-upload the stashed last part with the trailer appended, under its own part number."""
    assert target.bucket is not None and target.key is not None
    stash = await gw.uploads.open_stash(target.bucket, upload_id, last)
    stored = ciphertext_size(last.size)
    if stash.content_length != stored:
        stash.close()
        raise errors.InternalError("The gateway's copy of the upload's last part has the wrong size.")

    async def body() -> AsyncIterator[memoryview]:
        async for chunk in stash.content.iter_any():
            yield memoryview(chunk)  # aiohttp cuts chunks with chunk[:n]: a view is not copied
        yield memoryview(trailer)

    try:
        response = await gw.upstream.request("PUT", target.bucket, target.key,
                                             [("partNumber", str(last.number)), ("uploadId", upload_id)],
                                             body=body(), content_length=stored + len(trailer))
    finally:
        stash.close()
    async with response:
        if response.status != 200:
            raise errors.UpstreamError("The object store did not take the last part.")
        return normalise_etag(response.headers.get("ETag", ""))


async def abort_multipart_upload(gw: Gateway, request: web.Request, target: Target,
                                 verified: VerifiedRequest) -> web.Response:
    assert target.bucket is not None and target.key is not None
    upload_id = _upload_id(target)
    await read_control_body(gw, request, verified)
    headers = forwardable_request_headers(request.headers.items())
    response = await gw.upstream.request("DELETE", target.bucket, target.key, target.query, headers)
    async with response:
        if response.status in (200, 204):
            answer = web.Response(status=204, headers=client_response_headers(response.headers))
        else:
            answer = await relay_upstream_error(response)
    if response.status in (200, 204, 404):  # aborted now, or gone already: its records go too
        await gw.uploads.forget(target.bucket, upload_id)
    return answer


async def _abort_upstream(gw: Gateway, bucket: str, key: str, upload_id: str) -> None:
    try:
        response = await gw.upstream.request("DELETE", bucket, key, [("uploadId", upload_id)])
        response.close()
    except errors.S3Error:
        log.warning("could not abort an upstream multipart upload after a failure")


def _part_size(stored: int, _etag: str) -> int | None:
    try:
        return plaintext_size(stored)
    except ValueError:
        return None


async def list_parts(gw: Gateway, request: web.Request, target: Target, verified: VerifiedRequest
                     ) -> web.Response:
    await read_control_body(gw, request, verified)
    headers = forwardable_request_headers(request.headers.items())
    response = await gw.upstream.request("GET", target.bucket, target.key, target.query, headers)
    async with response:
        if response.status != 200:
            return await relay_upstream_error(response)
        body = await response.read()
        out = client_response_headers(response.headers)
    return web.Response(status=200, body=rewrite_listing(body, _part_size), headers=out)

