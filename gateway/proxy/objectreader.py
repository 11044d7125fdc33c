"""Reading an object as plaintext: the upstream request(s), the key, the segments to open. Used by GetObject /
HeadObject and by UploadPartCopy (which re-encrypts a plaintext range of another object).

Nothing unauthenticated is released: the key commitment is checked before any segment is opened, and every
segment is opened (GCM tag, index, final flag) before its plaintext is yielded. A single-layout object costs
one upstream request (the client's range is widened to whole segments for every possible size); a
multipart-layout object one more, for its part table (pinned with If-Match to the object first seen).
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import aiohttp

from gateway import errors
from gateway.format import multipart
from gateway.format.envelope import (FLAG_MULTIPART_LAYOUT, Header, MultipartKeys, WrappedKey,
                                     encryption_context, open_multipart_keys, open_object_key, parse_metadata)
from gateway.format.fetchplan import parse_content_range, upstream_range
from gateway.format.multipart import MAX_PARTS
from gateway.format.reading import (Run, multipart_plaintext_size, object_run, one_request_plaintext_size,
                                    part_runs, table_from_tail, table_tail_fetch_size, table_tail_refetch_size)
from gateway.format.sizes import SEALED_SEGMENT_SIZE_BYTES, SEGMENT_SIZE_BYTES, covering_segments
from gateway.observability.logs import audit
from gateway.proxy.budget import Lease
from gateway.proxy.context import Gateway
from gateway.proxy.headers import client_response_headers
from gateway.proxy.pipeline import aclose_quietly, ordered_work
from gateway.proxy.responses import read_upto, sse_headers
from gateway.proxy.storefaults import STORE_FAULTS, store_fault
from gateway.proxy.tablecache import CachedTable
from gateway.s3.metadata import envelope_fields
from gateway.s3.multipart_xml import multipart_part_count
from gateway.numerals import decimal
from gateway.s3.ranges import content_range, parse_range

T = TypeVar("T")


class UpstreamAnswer(Exception):
    """The store answered with an error or a redirect that the client should see as it came."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        super().__init__(response.status)
        self.response = response


class PlaintextBody:
    """Decrypted bytes in the shape of a client body (gateway.proxy.body.ClientBody), to be sealed again: the
    body of an UploadPartCopy. Nothing to verify: every byte was authenticated when it was opened."""
    needs_digest = False

    def __init__(self, views: AsyncIterator[memoryview], length: int) -> None:
        self._views, self.length = views, length
        self.failure: errors.S3Error | None = None  # the read's own failure (the store's side, or tampering)

    async def pieces(self) -> AsyncIterator[memoryview]:
        while True:
            try:
                view = await anext(self._views)
            except StopAsyncIteration:
                return
            except Exception as exc:  # noqa: BLE001 - the source's own failure, recorded for send_sealed
                self.failure = store_fault(exc)
                raise self.failure from None
            yield view

    def digest(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def verify(self) -> dict[str, str]:
        return {}


@dataclass
class Plaintext:
    status: int  # 200, or 206 for a range or a part
    headers: dict[str, str]  # for the client: the store's, minus ciphertext facts, plus sizes and SSE
    length: int  # plaintext bytes that `views` yields
    etag: str  # the store's ETag of the object read
    views: AsyncIterator[memoryview] | None  # None for HEAD


@dataclass
class _Sealed:
    pieces: list[memoryview]  # stored bytes as they arrived (views, not copies): opened in place
    size: int
    first_index: int
    run: Run


async def _stored_views(content: aiohttp.StreamReader, skip: int, need: int) -> AsyncIterator[memoryview]:
    """Exactly `need` stored bytes after skipping `skip`, as views of the chunks as they arrive."""
    got = 0
    while got < need:
        try:
            chunk, end_of_http_chunk = await content.readchunk()  # no join of buffered chunks (see body.pieces)
        except STORE_FAULTS as exc:  # reset, sock_read timeout, truncated chunked body: the store's side
            raise store_fault(exc) from None
        if not chunk:
            if end_of_http_chunk and not content.at_eof():
                continue
            raise errors.TamperedCiphertext("The stored object is shorter than its recorded size.")
        view = memoryview(chunk)
        if skip:
            dropped = min(skip, len(view))
            view, skip = view[dropped:], skip - dropped
        view = view[:need - got]
        got += len(view)
        if view:
            yield view


async def _relayed(content: aiohttp.StreamReader, skip: int, need: int) -> AsyncIterator[memoryview]:
    """Stored bytes served as they are (a plaintext object): a body cut short is the store's failure, not
    tampering."""
    try:
        async for view in _stored_views(content, skip, need):
            yield view
    except errors.TamperedCiphertext:
        raise errors.UpstreamError("The object store's response broke off; retry.") from None


async def _sealed_batches(content: aiohttp.StreamReader, skip: int, runs: list[Run], lease: Lease
                          ) -> AsyncIterator[_Sealed]:
    """The runs' stored bytes, cut into batches of whole sealed segments that never straddle two runs: lists of
    views of the chunks as they arrived (the event loop copies nothing); each batch is started once the memory
    budget allows it, with the size the budget gives it."""
    views = _stored_views(content, skip, sum(run.stored_bytes for run in runs))
    pending = memoryview(b"")
    for run in runs:
        left, index = run.stored_bytes, run.first_index
        while left:
            plain = await lease.acquire()
            want, pieces, filled = min(plain // SEGMENT_SIZE_BYTES * SEALED_SEGMENT_SIZE_BYTES, left), [], 0
            while filled < want:
                if not pending:
                    pending = await anext(views)
                take = min(len(pending), want - filled)
                pieces.append(pending[:take])
                filled, pending = filled + take, pending[take:]
            left -= filled
            yield _Sealed(pieces, filled, index, run)
            index += filled // SEALED_SEGMENT_SIZE_BYTES


def part_number_of(raw: str | None, range_value: str | None) -> int | None:
    """The validated ?partNumber= of a GET/HEAD (None if absent)."""
    if raw is None:
        return None
    if range_value:
        raise errors.InvalidRequest("Cannot specify both Range header and partNumber query parameter.")
    number = decimal(raw, cap=MAX_PARTS + 1)
    if number is None or not 1 <= number <= MAX_PARTS:
        raise errors.InvalidArgument("Part number must be an integer between 1 and 10000, inclusive.",
                                     ArgumentName="partNumber", ArgumentValue=raw)
    return number


@dataclass
class ObjectReader:
    gw: Gateway
    bucket: str
    key: str
    principal: str
    query: list[tuple[str, str]]  # versionId, response-* overrides: sent with every upstream request
    head: bool = False
    range_value: str | None = None
    part_number: int | None = None
    conditions: dict[str, str] = field(default_factory=dict)  # If-Match & co., evaluated by the store
    _responses: list[aiohttp.ClientResponse] = field(default_factory=list)

    def close(self) -> None:
        """Drop every upstream response: whatever was not read (a window's tail, an abort) is not read now."""
        for response in self._responses:
            response.close()

    async def open(self) -> Plaintext:
        cached = self._cached_table()
        if cached is not None:
            plain = await self._open_with_table(cached)
            if plain is not None:
                return plain
        headers = dict(self.conditions)
        plaintext_possible = self.gw.reads_plaintext(self.bucket)
        fetch = None if self.head or self.part_number is not None else upstream_range(self.range_value,
                                                                                       plaintext_possible)
        if fetch is not None:
            headers["range"] = fetch
        response = await self.gw.upstream.request("HEAD" if self.head else "GET", self.bucket, self.key, self.query,
                                                  headers)
        self._responses.append(response)
        if response.status == 416:
            raise errors.InvalidRange()
        if response.status >= 300:
            raise UpstreamAnswer(response)
        fields = envelope_fields(response.headers)
        window = _window(response)
        if not fields and plaintext_possible:
            # Only an object with no envelope field at all: one whose envelope is damaged or partly stripped is
            # still refused below, never downgraded to "plaintext".
            return await self._stored_plaintext(response, window)
        envelope, wrapped = parse_metadata(fields)
        out = self._client_headers(response, wrapped)
        etag = response.headers.get("ETag", "")
        if envelope.flags & FLAG_MULTIPART_LAYOUT:
            return await self._multipart(response, envelope, wrapped, window, out, etag)
        size = one_request_plaintext_size(window.total)
        if self.part_number not in (None, 1):
            raise errors.InvalidPartNumber()
        selected = parse_range(self.range_value, size)
        start, end = selected if selected is not None else (0, size - 1)
        span = covering_segments(start, end, size)
        status = _range_headers(out, selected, size, span.length)
        if self.head:
            return Plaintext(status, out, span.length, etag, None)
        object_key = await self._open(open_object_key, envelope, wrapped)
        views = self._views(response, window, span.ciphertext_start, span.ciphertext_end,
                            [object_run(object_key, span)], span.skip_bytes, span.length)
        return Plaintext(status, out, span.length, etag, views)

    async def _stored_plaintext(self, response: aiohttp.ClientResponse, window: _Window) -> Plaintext:
        """An object written around the gateway, in a bucket opted in to plaintext reads (migration): served as
        it is stored, every read counted and audited. Its ETag, size and parts are the store's own."""
        etag = response.headers.get("ETag", "")
        self.gw.metrics.plaintext_reads.inc()
        audit("PlaintextRead", "served", principal=self.principal, bucket=self.bucket, key=self.key)
        if self.part_number is not None:
            # Where a plaintext object's parts start only the store knows: it is asked for the part itself.
            response.close()
            response = await self.gw.upstream.request("HEAD" if self.head else "GET", self.bucket, self.key,
                                                      [*self.query, ("partNumber", str(self.part_number))],
                                                      self.conditions)
            self._responses.append(response)
            if response.status == 416:
                raise errors.InvalidPartNumber()
            if response.status >= 300:
                raise UpstreamAnswer(response)
            if envelope_fields(response.headers):
                # Replaced by an encrypted object meanwhile. (Not pinned with If-Match: a store may compare it
                # with the part's ETag, as moto does.)
                raise errors.ObjectChanged()
            etag = response.headers.get("ETag", "")
            if response.status == 200 and not self.head and (multipart_part_count(etag) or 1) > 1:
                # The whole object where a part was asked for (moto does this): never served as the part.
                raise errors.NotImplementedS3("The object store does not serve parts of this object by number.")
            window = _window(response)
            selected: tuple[int, int] | None = (window.first, window.last) if response.status == 206 else None
        else:
            selected = parse_range(self.range_value, window.total)
        out = client_response_headers(response.headers)
        out["Accept-Ranges"] = "bytes"
        start, end = selected if selected is not None else (0, window.total - 1)
        length = end - start + 1
        status = _range_headers(out, selected, window.total, length)
        if self.head or not length:
            return Plaintext(status, out, length, etag, None if self.head else _nothing())
        if not window.covers(start, end):
            response.close()
            response = await self._fetch(etag, f"bytes={start}-{end}")
            window = _window(response)
        return Plaintext(status, out, length, etag, _relayed(response.content, start - window.first, length))

    async def _multipart(self, response: aiohttp.ClientResponse, envelope: Header, wrapped: list[WrappedKey],
                         window: _Window, out: dict[str, str], etag: str) -> Plaintext:
        stored_parts = multipart_part_count(etag)
        if self.head and self.part_number is None and stored_parts is not None:
            # The size follows from the stored size and the store's part count: a HEAD needs no KMS call.
            size = multipart_plaintext_size(window.total, stored_parts)
            _range_headers(out, None, size, size)
            return Plaintext(200, out, size, etag, None)
        keys = await self._open(open_multipart_keys, envelope, wrapped)
        table = await self.part_table(keys, etag, window.total, stored_parts)
        if self._cacheable():
            self.gw.tables.put(self.bucket, self.key, CachedTable(etag, envelope, table))
        size = table.plaintext_size
        selected = self._select(table)
        if self.part_number is not None:
            out["x-amz-mp-parts-count"] = str(len(table.parts))
        start, end = selected if selected is not None else (0, size - 1)
        length = end - start + 1
        status = _range_headers(out, selected, size, length)
        if self.head or not length:  # HEAD, an empty object (its table authenticated it), an empty part
            return Plaintext(status, out, length, etag, None if self.head else _nothing())
        span = multipart.covering_parts(start, end, table)
        runs = part_runs(keys, span)
        if not window.covers(span.ciphertext_start, span.ciphertext_end):
            response.close()
            response = await self._fetch(etag, f"bytes={span.ciphertext_start}-{span.ciphertext_end}")
            window = _window(response)
        views = self._views(response, window, span.ciphertext_start, span.ciphertext_end, runs,
                            span.parts[0].span.skip_bytes, length)
        return Plaintext(status, out, length, etag, views)

    def _cacheable(self) -> bool:
        # The cache names the object's current version: a read of a given version, or under the client's own
        # conditions, takes the full path.
        return not self.head and not self.conditions and all(name != "versionId" for name, _ in self.query)

    def _cached_table(self) -> CachedTable | None:
        return self.gw.tables.get(self.bucket, self.key) if self._cacheable() else None

    async def _open_with_table(self, cached: CachedTable) -> Plaintext | None:
        """A read of a multipart-layout object whose table is cached: one request for the covering bytes, pinned
        to the cached ETag. None (and the entry dropped) when the object is not the one the table describes."""
        table = cached.table
        size = table.plaintext_size
        selected = self._select(table)
        start, end = selected if selected is not None else (0, size - 1)
        length = end - start + 1
        if not length:
            return None  # nothing to fetch: the full path answers it
        span = multipart.covering_parts(start, end, table)
        response = await self.gw.upstream.request(
            "GET", self.bucket, self.key, self.query,
            {"range": f"bytes={span.ciphertext_start}-{span.ciphertext_end}", "if-match": cached.etag})
        self._responses.append(response)
        if response.status >= 300 and response.status not in (412, 416):
            raise UpstreamAnswer(response)  # a missing object, a denied request: as the full path relays them
        if response.status == 206:
            envelope, wrapped = parse_metadata(envelope_fields(response.headers))
            window = _window(response)
            if envelope == cached.header and window.total == multipart.stored_size(size, table.stored_part_count):
                out = self._client_headers(response, wrapped)
                if self.part_number is not None:
                    out["x-amz-mp-parts-count"] = str(len(table.parts))
                status = _range_headers(out, selected, size, length)
                keys = await self._open(open_multipart_keys, envelope, wrapped)
                views = self._views(response, window, span.ciphertext_start, span.ciphertext_end,
                                    part_runs(keys, span), span.parts[0].span.skip_bytes, length)
                return Plaintext(status, out, length, cached.etag, views)
        # Not the object the table describes (412, another header or size), or a store that ignored the range
        # (a 200 carries the whole ciphertext, which must never be relayed): the full path decides.
        response.close()
        self.gw.tables.drop(self.bucket, self.key)
        return None

    def _select(self, table: multipart.PartTable) -> tuple[int, int] | None:
        """The plaintext bytes asked for (None: the whole object): a part by number, or the client's Range."""
        if self.part_number is None:
            return parse_range(self.range_value, table.plaintext_size)
        selected = multipart.part_range(table, self.part_number)
        if selected is None:
            raise errors.InvalidPartNumber()
        return selected

    @staticmethod
    def _client_headers(response: aiohttp.ClientResponse, wrapped: list[WrappedKey]) -> dict[str, str]:
        """The store's response headers a client may see, with the SSE-KMS headers of an encrypted object."""
        out = client_response_headers(response.headers)
        out.update(sse_headers(wrapped[0].key_id if wrapped else ""))
        out["Accept-Ranges"] = "bytes"
        return out

    async def part_table(self, keys: MultipartKeys, etag: str, total: int, stored_parts: int | None
                         ) -> multipart.PartTable:
        """The part table from the object's last bytes (one ranged GET, pinned to the ETag just seen)."""
        tail = await self._read_tail(etag, table_tail_fetch_size(total, stored_parts))
        refetch = table_tail_refetch_size(tail, total)
        if refetch is not None:
            tail = await self._read_tail(etag, refetch)
        return table_from_tail(keys, tail, total, stored_parts)

    async def _read_tail(self, etag: str, length: int) -> bytes:
        response = await self._fetch(etag, f"bytes=-{length}")
        data = await read_upto(response, length + 1)
        response.close()
        if len(data) != length:
            raise errors.TamperedCiphertext("The stored object is shorter than its recorded size.")
        return data

    async def _fetch(self, etag: str, byte_range: str) -> aiohttp.ClientResponse:
        """A further GET of the same object: If-Match keeps it the very object the first response described."""
        response = await self.gw.upstream.request("GET", self.bucket, self.key, self.query,
                                                  {"range": byte_range, "if-match": etag})
        self._responses.append(response)
        if response.status == 412:
            raise errors.ObjectChanged()
        if response.status != 206:
            raise errors.UpstreamError("The object store did not return the byte range asked for.")
        return response

    async def _open(self, opener: Callable[[bytearray, Header], T], envelope: Header, wrapped: list[WrappedKey]) -> T:
        return await self.gw.keys.open_keys(opener, envelope, wrapped, encryption_context(self.bucket, self.key),
                                            self.principal)

    def _views(self, response: aiohttp.ClientResponse, window: _Window, first: int, last: int, runs: list[Run],
               skip: int, length: int) -> AsyncIterator[memoryview]:
        gw = self.gw
        stored_skip = first - window.first
        if stored_skip < 0 or window.last < last:
            raise errors.UpstreamError("The object store returned a different byte range than requested.")

        def open_(sealed: _Sealed) -> bytearray:
            return sealed.run.open(sealed.first_index, sealed.pieces)

        need = last - first + 1
        gw.metrics.ciphertext_bytes.labels("in").inc(need)
        lease = gw.budget.lease()
        sealed = _sealed_batches(response.content, stored_skip, runs, lease)
        if need <= SEALED_SEGMENT_SIZE_BYTES:
            async def inline() -> AsyncIterator[bytearray]:
                # One segment: opened on the event loop (microseconds), no pool hop, no pipeline tasks.
                async for batch in sealed:
                    yield open_(batch)
            return _trimmed(inline(), skip, length, lease)
        return _trimmed(ordered_work(sealed, open_, gw.pool, gw.inflight_batches), skip, length, lease)


async def _trimmed(plaintexts: AsyncIterator[bytearray], skip: int, length: int, lease: Lease
                   ) -> AsyncIterator[memoryview]:
    """The `length` bytes after `skip` of the opened batches. Every batch is opened, even past the range's end
    (there are none: the window ends with the last covering segment), and a short object is tampering. A
    batch's share of the memory budget is returned once its bytes were taken (written) by the consumer."""
    remaining = length
    try:
        async for plaintext in plaintexts:
            view = memoryview(plaintext)[skip:skip + remaining]
            skip = 0
            if view:
                remaining -= len(view)
                yield view
            lease.release()
        if remaining:
            raise errors.TamperedCiphertext("The stored object ended before the requested range.")
    finally:
        # The pipeline first (its task, its batches), then the budget share those batches were counted in.
        await aclose_quietly(plaintexts)
        lease.close()


async def _nothing() -> AsyncIterator[memoryview]:
    return
    yield


def _range_headers(out: dict[str, str], selected: tuple[int, int] | None, size: int, length: int) -> int:
    out["Content-Length"] = str(length)
    if selected is None:
        return 200
    out["Content-Range"] = content_range(selected[0], selected[1], size)
    return 206


@dataclass(frozen=True)
class _Window:
    """The stored bytes an upstream response carries: first..last (inclusive) of an object of `total` bytes."""
    first: int
    last: int
    total: int

    def covers(self, first: int, last: int) -> bool:
        return self.first <= first and last <= self.last


def _window(response: aiohttp.ClientResponse) -> _Window:
    if response.status == 206 and "Content-Range" in response.headers:
        return _Window(*parse_content_range(response.headers["Content-Range"]))
    total = int(response.headers.get("Content-Length", "0"))
    return _Window(0, total - 1, total)
