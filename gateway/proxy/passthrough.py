"""Operations the gateway does not transform: verified, re-signed and relayed; listings get plaintext sizes."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import logging

import aiohttp
from aiohttp import web

from gateway import errors
from gateway.numerals import decimal
from gateway.format import multipart
from gateway.format.sizes import plaintext_size
from gateway.proxy.body import ClientBody
from gateway.proxy.context import Gateway
from gateway.proxy.headers import client_response_headers, forwardable_request_headers
from gateway.proxy.idle import client_idle
from gateway.proxy.responses import abort, read_upto, relay_upstream_error
from gateway.proxy.storefaults import STORE_FAULTS
from gateway.proxy.uploadstate import RESERVED_KEY_PREFIX, is_reserved_key
from gateway.s3.addressing import Target
from gateway.s3.operations import Operation
from gateway.s3.sigv4 import VerifiedRequest
from gateway.s3.multipart_xml import multipart_part_count, parse_delete_request
from gateway.s3.metadata import envelope_fields
from gateway.s3.xml import (ListedObject, check_client_document, listed_keys, listed_objects, parse_error, probe_query,
                              query_after, requested_entries, rewrite_listing, shadowing_prefixes,
                              visible_before_hidden)

log = logging.getLogger(__name__)

# Bodies of non-object operations (policies, tagging, lifecycle, DeleteObjects with 1,000 keys) are small; S3
# caps most at a few hundred KiB. They are read whole so they can be verified and re-signed with their hash.
MAX_CONTROL_BODY_BYTES = 4 * 1024 * 1024
# A listing page holds at most 1,000 entries; even with long keys it stays well below this.
MAX_LISTING_BYTES = 32 * 1024 * 1024
# HEADs in flight per listing page of a bucket opted in to plaintext reads (a page names up to 1,000 objects).
_LISTING_HEADS_IN_FLIGHT = 16
# A key after every key the gateway keeps under its reserved prefix (they are ASCII): where a listing resumes
# when a page ends among them. Sent to the store only, never shown to a client.
_PAST_RESERVED = RESERVED_KEY_PREFIX + "\U0010ffff"
# Request bodies passed through are XML, but for this one (JSON).
_NOT_XML_BODIES = frozenset({"PutBucketPolicy"})


async def read_control_body(gw: Gateway, request: web.Request, verified: VerifiedRequest) -> bytes:
    """A small request body (XML, JSON), whole and checked; one that stops arriving is a 400 RequestTimeout."""
    body = ClientBody(request, verified, gw)
    if body.length > MAX_CONTROL_BODY_BYTES:
        raise errors.EntityTooLarge(f"Request bodies of this operation are limited to {MAX_CONTROL_BODY_BYTES} bytes.")
    data = bytearray()
    async for piece in body.pieces():
        data += piece
    body.digest(data)
    body.verify()
    return bytes(data)


async def pass_through(gw: Gateway, request: web.Request, target: Target, verified: VerifiedRequest,
                       operation: Operation) -> web.StreamResponse:
    data = await read_control_body(gw, request, verified)
    if operation.name == "DeleteObjects":
        deletion = parse_delete_request(data)
        if any(is_reserved_key(entry.key) for entry in deletion.objects):
            raise errors.AccessDenied("Key names under .envelope-gateway/ are reserved by the encryption gateway.")
        data = deletion.body()  # what was checked, not the client's bytes (their checksums were verified above)
    elif data and operation.name not in _NOT_XML_BODIES:
        check_client_document(data)
    headers = forwardable_request_headers(request.headers.items())
    if data:
        # Client checksums were verified and stripped; operations that require an integrity header
        # (DeleteObjects, PutBucketLifecycleConfiguration, …) get a Content-MD5 of the bytes we send.
        headers["content-md5"] = base64.b64encode(hashlib.md5(data).digest()).decode()
    response = await gw.upstream.request(request.method, target.bucket, target.key, target.query, headers,
                                         body=data if data or request.method in ("PUT", "POST") else None,
                                         payload_hash=hashlib.sha256(data).hexdigest())
    async with response:
        if response.status >= 300:
            return await relay_upstream_error(response)  # small, and through the store-fault map
        out = client_response_headers(response.headers)
        stream = web.StreamResponse(status=response.status, headers=out)
        length = decimal(response.headers.get("Content-Length", ""))
        if length is not None:
            stream.content_length = length
        transport = request.transport
        # As for object downloads: a client that stops reading is cut, and the store connection goes back.
        watch = client_idle(gw.metrics, gw.client_idle_seconds, "response_body", lambda: abort(request),
                            transport.get_write_buffer_size if transport is not None else None)
        try:
            watch.waiting()
            await stream.prepare(request)
            if request.method != "HEAD":
                async for chunk in response.content.iter_any():
                    watch.waiting()
                    await stream.write(chunk)
                    watch.moved()
        except (aiohttp.ClientError, OSError, *STORE_FAULTS):
            abort(request)
            return stream
        finally:
            watch.close()
        await stream.write_eof()
        return stream


async def delete_bucket(gw: Gateway, request: web.Request, target: Target, verified: VerifiedRequest
                        ) -> web.Response:
    """DeleteBucket; a bucket that holds nothing but the gateway's records of abandoned multipart uploads looks
    empty to clients, so it must delete: the records go (and their uploads are aborted), then the bucket."""
    assert target.bucket is not None
    await read_control_body(gw, request, verified)
    headers = forwardable_request_headers(request.headers.items())
    for attempt in (1, 2):
        response = await gw.upstream.request("DELETE", target.bucket, None, target.query, headers)
        async with response:
            out = client_response_headers(response.headers)
            if response.status < 300:
                return web.Response(status=response.status, headers=out)
            if response.status != 409 or attempt == 2:
                return await relay_upstream_error(response)
            body = await read_upto(response, 64 * 1024)
        error = parse_error(body)
        if error is None or error[0] != "BucketNotEmpty" or not await gw.uploads.only_records_left(target.bucket):
            return web.Response(status=409, body=body, headers=out)
        await gw.uploads.forget_bucket(target.bucket)
    raise AssertionError("unreachable")


def listed_size(stored: int, etag: str) -> int | None:
    """The plaintext size of a listed object from its stored size and ETag alone (no request per key): a
    multipart ETag (`…-M`) selects the multipart layout's arithmetic with M stored parts."""
    try:
        parts = multipart_part_count(etag)
        return plaintext_size(stored) if parts is None else multipart.plaintext_size(stored, parts)
    except ValueError:
        return None  # not a size this format can produce: shown as stored rather than guessed


async def list_objects(gw: Gateway, request: web.Request, target: Target, verified: VerifiedRequest
                       ) -> web.StreamResponse:
    await read_control_body(gw, request, verified)
    headers = forwardable_request_headers(request.headers.items())
    response = await gw.upstream.request("GET", target.bucket, None, target.query, headers)
    async with response:
        if response.status != 200:
            return await relay_upstream_error(response)
        body = await _read_limited(response, MAX_LISTING_BYTES)
        out = client_response_headers(response.headers)
    following = None
    visible = visible_before_hidden(body, is_reserved_key)
    if visible is not None:
        # The page ends among the reserved keys: its continuation point would name one (or a page of them would
        # end the listing early). The store's next page past them completes it; no marker names the prefix.
        count = max(1, requested_entries(target.query) - visible)
        query = query_after(target.query, _PAST_RESERVED, count)
        response = await gw.upstream.request("GET", target.bucket, None, query, headers)
        async with response:
            if response.status != 200:
                return await relay_upstream_error(response)
            following = await _read_limited(response, MAX_LISTING_BYTES)
    hidden = set()
    for page in (body, following):
        for prefix in shadowing_prefixes(page, RESERVED_KEY_PREFIX) if page is not None else ():
            if not await _visible_keys_under(gw, target.bucket, target.query, prefix, headers):
                hidden.add(prefix)  # it stands for the gateway's records alone: naming it would reveal them

    def hide(key: str) -> bool:
        return is_reserved_key(key) or key in hidden

    plaintext: set[tuple[str, str | None]] = set()
    if gw.reads_plaintext(target.bucket):
        for page in (body, following):
            if page is not None:
                plaintext |= await _plaintext_objects(gw, target.bucket, page)
    listing = rewrite_listing(body, listed_size, hide, plaintext, following=following)
    return web.Response(status=200, body=listing, headers=out)


async def _visible_keys_under(gw: Gateway, bucket: str, query: list[tuple[str, str]], prefix: str,
                              headers: dict[str, str]) -> bool:
    """Whether any key a client may see lies under `prefix`: the first key at or after it, and if that one is
    the gateway's, the first after the reserved run (its keys are contiguous in key order). One or two requests,
    only for a common prefix that leads into the reserved prefix."""
    first = probe_query(query, prefix)
    for probe in (first, query_after(first, _PAST_RESERVED, 1)):
        response = await gw.upstream.request("GET", bucket, None, probe, headers)
        async with response:
            if response.status != 200:
                raise errors.UpstreamError("The object store could not list the bucket; retry.")
            keys = listed_keys(await _read_limited(response, MAX_LISTING_BYTES))
        if any(not is_reserved_key(key) for key in keys):
            return True
        if not keys:
            return False
    return False


async def _plaintext_objects(gw: Gateway, bucket: str, body: bytes) -> set[tuple[str, str | None]]:
    """(key, version id) of the listed objects that have no envelope metadata, in a bucket opted in to plaintext
    reads: their listed size is their stored size. Nothing in a listing tells such an object from an encrypted
    one, so each costs a HEAD (bounded concurrency); objects whose stored size no encrypted object can have are
    shown as stored anyway and need none."""
    candidates = [entry for entry in listed_objects(body)
                  if not is_reserved_key(entry.key) and listed_size(entry.stored_size, entry.etag) is not None]
    limit = asyncio.Semaphore(_LISTING_HEADS_IN_FLIGHT)

    async def stored_as_plaintext(entry: ListedObject) -> bool:
        async with limit:
            # Version "null" (written while the bucket was unversioned) is asked for as the current object: not
            # every store takes versionId=null. (Only a null version that is no longer current is then mis-sized.)
            query = [("versionId", entry.version_id)] if entry.version_id not in (None, "null") else []
            response = await gw.upstream.request("HEAD", bucket, entry.key, query)
            response.close()
            # An object deleted or replaced since the listing keeps the computed size, as without migration.
            return response.status == 200 and not envelope_fields(response.headers)

    found = await asyncio.gather(*map(stored_as_plaintext, candidates))
    return {(entry.key, entry.version_id) for entry, plain in zip(candidates, found) if plain}


async def _read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes:
    data = bytearray()
    async for chunk in response.content.iter_any():
        data += chunk
        if len(data) > limit:
            raise errors.InternalError("The object store's listing is larger than the gateway accepts.")
    return bytes(data)
