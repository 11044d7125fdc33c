"""What the gateway keeps about in-progress multipart uploads: in the store itself, under a reserved prefix.

No process memory and no database: any replica can take any request of an upload, and a restart between parts
loses nothing. Per upload, under `.envelope-gateway/uploads/<sha256(upload id)>/`:

- `state`: the object key, the upload id and the envelope (header + wrapped DEK), JSON. Immutable.
- one empty *record* per part upload, its name carrying the part number, the store's part ETag, the plaintext
  size and the part salt. Parts of an in-progress upload cannot be read back from S3, and the part table written
  at Complete needs every part's salt; the ETag in the name tells which upload of a part number is the one the
  client completes with.
- a *stash* (ciphertext copy) of each part that can only be the last one (< 5 MiB, or number 10,000): at
  Complete it is re-uploaded with the part table appended (docs/FORMAT.md, multipart layout).

Everything is deleted on Complete and Abort; listings never show the prefix, and clients cannot touch it.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

import aiohttp

from gateway import errors
from gateway.format.envelope import (Header, MultipartKeys, WrappedKey, encryption_context, metadata_for,
                                     open_multipart_keys, parse_metadata)
from gateway.keys.kms import KeyService
from gateway.proxy.responses import read_upto
from gateway.proxy.upstream import Upstream
from gateway.s3.multipart_xml import delete_objects_body, list_keys

log = logging.getLogger(__name__)

RESERVED_KEY_PREFIX = ".envelope-gateway/"
UPLOADS_PREFIX = RESERVED_KEY_PREFIX + "uploads/"
_STATE_FORMAT = 1
# A state object is about 1 KiB (the header and one or two wrapped keys).
_MAX_STATE_BYTES = 64 * 1024
# p<number>.<base64url ETag>.<plaintext size>.<salt hex>.<p|s> — exactly what PartRecord.name writes.
_RECORD = re.compile(r"\Ap(\d{5})\.([A-Za-z0-9_-]+)\.(0|[1-9]\d{0,11})\.([0-9a-f]{64})\.([ps])\Z", re.ASCII)
# DeleteObjects takes at most 1,000 keys per request.
_DELETE_BATCH = 1000


def is_reserved_key(key: str | None) -> bool:
    return key is not None and key.startswith(RESERVED_KEY_PREFIX)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def upload_prefix(upload_id: str) -> str:
    # A hash, not the id itself: upload ids are long and their alphabet is the store's business.
    return f"{UPLOADS_PREFIX}{hashlib.sha256(upload_id.encode()).hexdigest()}/"


@dataclass(frozen=True)
class UploadState:
    key: str
    upload_id: str
    header: Header
    wrapped: list[WrappedKey]

    def encode(self, bucket: str) -> bytes:
        return json.dumps({"format": _STATE_FORMAT, "bucket": bucket, "key": self.key, "upload_id": self.upload_id,
                           "envelope": metadata_for(self.header, self.wrapped)}, sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes) -> UploadState:
        try:
            doc = json.loads(data)
            if doc.get("format") != _STATE_FORMAT:
                raise ValueError("unknown state format")
            header, wrapped = parse_metadata(doc["envelope"])
            return cls(doc["key"], doc["upload_id"], header, wrapped)
        except (ValueError, KeyError, TypeError, AttributeError, errors.S3Error):
            raise errors.InternalError("The gateway's record of this multipart upload is unreadable.") from None


@dataclass(frozen=True)
class PartRecord:
    number: int
    etag: str  # the store's ETag of the part, unquoted
    size: int  # plaintext bytes
    salt: bytes
    stashed: bool

    def name(self, upload_id: str) -> str:
        kind = "s" if self.stashed else "p"
        return (f"{upload_prefix(upload_id)}p{self.number:05d}.{_b64(self.etag.encode())}.{self.size}."
                f"{self.salt.hex()}.{kind}")

    @classmethod
    def parse(cls, name: str) -> PartRecord | None:
        """The record a key names, or None for keys that are not records (the state, stashes) or malformed."""
        match = _RECORD.match(name.rsplit("/", 1)[-1])
        if match is None:
            return None
        number, etag, size, salt, kind = match.groups()
        try:
            text = _unb64(etag).decode()
        except ValueError:
            return None
        if not 1 <= int(number) <= 10_000 or not text or _b64(text.encode()) != etag:
            return None
        return cls(int(number), text, int(size), bytes.fromhex(salt), kind == "s")


def stash_key(upload_id: str, number: int, salt: bytes) -> str:
    return f"{upload_prefix(upload_id)}s{number:05d}.{salt.hex()}"


class UploadStates:
    """The store-side records of multipart uploads, with a small cache of recently used upload states.

    The cache holds states only (each one is immutable once created; no key material), so parts after the first
    cost no state read. Their data key comes from KeyService's DEK cache, so parts after the first cost no KMS
    call either, and an upload's keys obey the same TTL, use and revocation bounds as every other data key.
    """

    def __init__(self, upstream: Upstream, keys: KeyService, *, max_entries: int = 256,
                 ttl_seconds: float = 600) -> None:
        self._upstream = upstream
        self._keys = keys
        self._max_entries = max_entries
        self._ttl_seconds = ttl_seconds
        self._cache: OrderedDict[tuple[str, str], tuple[float, UploadState]] = OrderedDict()

    async def save(self, bucket: str, state: UploadState) -> None:
        response = await self._upstream.request("PUT", bucket, upload_prefix(state.upload_id) + "state",
                                                body=state.encode(bucket),
                                                headers={"content-type": "application/json"})
        async with response:
            if response.status != 200:
                raise errors.UpstreamError("The object store refused the gateway's multipart upload record.")

    async def open(self, bucket: str, key: str, upload_id: str, principal: str) -> tuple[UploadState, MultipartKeys]:
        """The upload's state and keys; NoSuchUpload unless the upload exists for exactly this key."""
        now = time.monotonic()
        cached = self._cache.get((bucket, upload_id))
        if cached is not None and cached[0] > now:
            self._cache.move_to_end((bucket, upload_id))
            state = cached[1]
        else:
            state = await self._load(bucket, upload_id)
            self._cache[(bucket, upload_id)] = (now + self._ttl_seconds, state)
            while len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)
        if state.key != key:
            raise errors.NoSuchUpload(UploadId=upload_id)
        keys = await self._keys.open_keys(open_multipart_keys, state.header, state.wrapped,
                                          encryption_context(bucket, key), principal)
        return state, keys

    async def _load(self, bucket: str, upload_id: str) -> UploadState:
        response = await self._upstream.request("GET", bucket, upload_prefix(upload_id) + "state")
        async with response:
            if response.status == 404:
                raise errors.NoSuchUpload(UploadId=upload_id)
            if response.status != 200:
                raise errors.UpstreamError("The object store did not return the multipart upload's record.")
            state = UploadState.decode(await read_upto(response, _MAX_STATE_BYTES))
        if state.upload_id != upload_id:
            raise errors.NoSuchUpload(UploadId=upload_id)
        return state

    async def add_record(self, bucket: str, upload_id: str, record: PartRecord) -> None:
        response = await self._upstream.request("PUT", bucket, record.name(upload_id), body=b"")
        async with response:
            if response.status != 200:
                raise errors.UpstreamError("The object store refused the gateway's record of a part.")

    async def records(self, bucket: str, upload_id: str) -> dict[tuple[int, str], PartRecord]:
        out = {}
        for name in await self._names(bucket, upload_id):
            record = PartRecord.parse(name)
            if record is not None:
                out[(record.number, record.etag)] = record
        return out

    async def _names(self, bucket: str, upload_id: str) -> list[str]:
        return await self.keys_under(bucket, upload_prefix(upload_id))

    async def keys_under(self, bucket: str, prefix: str) -> list[str]:
        names: list[str] = []
        token: str | None = None
        while True:
            keys, token = await self._page(bucket, [("prefix", prefix)] + ([("continuation-token", token)]
                                                                          if token else []))
            names.extend(keys)
            if token is None:
                return names

    async def open_stash(self, bucket: str, upload_id: str, record: PartRecord) -> aiohttp.ClientResponse:
        response = await self._upstream.request("GET", bucket, stash_key(upload_id, record.number, record.salt))
        if response.status != 200:
            response.close()
            raise errors.InternalError("The gateway's copy of the upload's last part is missing.")
        return response

    async def forget(self, bucket: str, upload_id: str) -> None:
        """Delete everything kept for the upload. Best effort: a failure is logged, never the client's."""
        self._cache.pop((bucket, upload_id), None)
        try:
            await self.delete_keys(bucket, await self._names(bucket, upload_id))
        except errors.S3Error as exc:
            log.warning("could not delete the records of a finished multipart upload: %s", exc.code)

    async def delete_keys(self, bucket: str, names: list[str]) -> None:
        for start in range(0, len(names), _DELETE_BATCH):
            body = delete_objects_body(names[start:start + _DELETE_BATCH])
            response = await self._upstream.request(
                "POST", bucket, None, [("delete", "")], body=body, payload_hash=hashlib.sha256(body).hexdigest(),
                headers={"content-md5": base64.b64encode(hashlib.md5(body).digest()).decode()})
            async with response:
                if response.status != 200:
                    raise errors.UpstreamError("The object store refused to delete the gateway's upload records.")

    async def only_records_left(self, bucket: str) -> bool:
        """True if the bucket holds nothing but the gateway's records (so it looks empty to clients)."""
        first, _ = await self._page(bucket, [("max-keys", "1000")])
        if any(not is_reserved_key(name) for name in first):
            return False
        # The reserved keys sort together: look past them ('0' follows '/').
        after, _ = await self._page(bucket, [("max-keys", "1"), ("start-after", RESERVED_KEY_PREFIX[:-1] + "0")])
        return not after

    async def _page(self, bucket: str, query: list[tuple[str, str]]) -> tuple[list[str], str | None]:
        response = await self._upstream.request("GET", bucket, None, [("list-type", "2"), *query])
        async with response:
            if response.status != 200:
                raise errors.UpstreamError("The object store did not list the bucket.")
            return list_keys(await response.read())

    async def forget_bucket(self, bucket: str) -> None:
        """Abort every upload the gateway has records of in the bucket, and delete all its records."""
        names = await self.keys_under(bucket, RESERVED_KEY_PREFIX)
        for name in names:
            if name.endswith("/state"):
                state = await self._state_at(bucket, name)
                if state is not None:
                    response = await self._upstream.request("DELETE", bucket, state.key,
                                                            [("uploadId", state.upload_id)])
                    response.close()
        await self.delete_keys(bucket, names)
        for cached in [entry for entry in self._cache if entry[0] == bucket]:
            del self._cache[cached]

    async def _state_at(self, bucket: str, name: str) -> UploadState | None:
        response = await self._upstream.request("GET", bucket, name)
        async with response:
            if response.status != 200:
                return None
            try:
                return UploadState.decode(await read_upto(response, _MAX_STATE_BYTES))
            except errors.S3Error:
                return None
