"""Rewrite an object's wrapped data keys (`envelope-key-*`) in place, without touching its body.

The wrapped-key list is not bound into the key schedule (FORMAT.md §3), so re-wrapping the DEK (`rewrap`, to
another master key) or adding a copy of it (`share`, for a partner) changes only metadata. S3 cannot edit
metadata, so the object is copied onto itself server-side with `x-amz-metadata-directive: REPLACE`: no byte of
the body crosses this process, and everything but the key entries is carried over (below).

The copy keeps the store's ETag, which the gateway's listings depend on (FORMAT.md §15.5: an ETag `…-M` means
the multipart layout, and the plaintext size is computed from the stored size and M):

- an ETag without `-M` → one CopyObject (same bytes, same MD5 ETag). S3 copies at most 5 GiB that way; the
  gateway never stores a one-request object larger than that (its PUT and copy limits), so a larger one is
  refused rather than re-chunked into a `-M` ETag that listings would misread;
- an ETag `…-M` → a multipart copy of exactly M parts at the store's own part boundaries (HeadObject
  `partNumber=1…M`), so the same bytes at the same boundaries give the same ETag on stores whose part ETags are
  MD5s (S3 without SSE-KMS, MinIO, moto). The boundaries come from the store, not from the sealed part table, so
  no data key is needed: a ReEncrypt-only role can run this.

Every copy is conditional on the ETag seen at HEAD (`x-amz-copy-source-if-match` on each copy request, and
`If-Match` on CompleteMultipartUpload), and a HEAD `If-Match` just before the write checks it once more for
stores that ignore those conditions: an object overwritten meanwhile is not clobbered, the rewrite fails with
PreconditionFailed and can be retried.

Kept: the body, the header entry, every other user-metadata entry (other `envelope-*` names included), Content-
Type/-Encoding/-Language/-Disposition, Cache-Control, Expires, the website redirect, the storage class, the
store-side encryption settings, tags, and object-lock retention and legal hold. Not kept: LastModified (it is a
new write), the version id (a versioned bucket gets a new version; older versions keep their old entries), ACLs
(the copy gets the bucket's default) and additional checksums (`x-amz-checksum-*`), which the gateway does not
store.
"""
from __future__ import annotations

import enum
import email.utils
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlencode

from gateway import errors
from gateway.format.envelope import META_HEADER, META_KEY_PREFIX, Header, WrappedKey, metadata_for, parse_metadata
from gateway.format.multipart import store_part_ranges
from gateway.proxy.uploadstate import is_reserved_key
from gateway.s3.metadata import MAX_USER_METADATA
from gateway.s3.multipart_xml import multipart_part_count
from gateway.tools.aws import store_call

# S3's limit for one CopyObject, and for one part of a multipart copy.
MAX_COPY_OBJECT_BYTES = 5 * 1024**3
# HeadObject partNumber / UploadPartCopy requests of one object in flight at once.
_PARALLEL_PART_REQUESTS = 4

# HeadObject fields that the copy must be told again (REPLACE drops them otherwise), by their boto3 names.
_KEPT_FIELDS = ("ContentType", "ContentEncoding", "ContentLanguage", "ContentDisposition", "CacheControl",
                "WebsiteRedirectLocation", "StorageClass", "ServerSideEncryption", "SSEKMSKeyId", "BucketKeyEnabled",
                "ObjectLockMode", "ObjectLockRetainUntilDate", "ObjectLockLegalHoldStatus")

Update = Callable[[Header, list[WrappedKey]], list[WrappedKey] | None]


class Outcome(enum.Enum):
    REWRITTEN = "rewritten"  # the object now carries the entries `update` returned
    UNCHANGED = "unchanged"  # `update` returned None or the same entries: nothing was written
    NOT_ENCRYPTED = "not-encrypted"  # not written through the gateway (no envelope): left alone


def rewrite_envelope(s3: Any, bucket: str, key: str, update: Update) -> Outcome:
    """Replace the object's wrapped data keys with what `update(header, entries)` returns (None: leave them).

    `s3` is a boto3 S3 client for the store itself. Errors are the gateway's: PreconditionFailed when the object
    changed between this HEAD and the copy (nothing was overwritten; retry), NoSuchKey, TamperedCiphertext or
    UnsupportedFormat for envelope metadata that cannot be parsed, InvalidArgument for a key of the gateway's own
    state or an attribute that cannot be carried over, MetadataTooLarge when the new entries do not fit.
    """
    if is_reserved_key(key):
        raise errors.InvalidArgument("Keys under .envelope-gateway/ hold the gateway's own state: not rewritten.")
    head = store_call(s3.head_object, Bucket=bucket, Key=key)
    try:
        header, wrapped = parse_metadata(head.get("Metadata", {}))
    except errors.NotEncrypted:
        return Outcome.NOT_ENCRYPTED
    entries = update(header, list(wrapped))
    if entries is None or entries == wrapped:
        return Outcome.UNCHANGED
    metadata = rewritten_metadata(head.get("Metadata", {}), header, entries)
    params = {"Metadata": metadata, **kept_attributes(head)}
    etag, stored_total = head["ETag"], head["ContentLength"]
    count = multipart_part_count(etag)
    try:
        if count is None:
            _copy_whole(s3, bucket, key, etag, stored_total, params)
        else:
            _copy_in_parts(s3, bucket, key, etag, stored_total, count, params)
    except errors.PreconditionFailed:
        raise errors.PreconditionFailed("The object changed meanwhile (written after it was read here): it was "
                                        "not rewritten; run again.") from None
    return Outcome.REWRITTEN


def rewritten_metadata(stored: Mapping[str, str], header: Header, entries: list[WrappedKey]) -> dict[str, str]:
    """The object's user metadata with its `envelope-key-*` entries replaced by `entries` (numbered from 0) and
    everything else as it was. MetadataTooLarge if the result exceeds S3's 2 KB."""
    if not entries:
        raise errors.InvalidArgument("An object needs at least one wrapped data key.")
    kept = {name: value for name, value in stored.items()
            if not name.lower().startswith(META_KEY_PREFIX) and name.lower() != META_HEADER}
    metadata = {**kept, **metadata_for(header, entries)}
    size = sum(len(name.encode()) + len(value.encode()) for name, value in metadata.items())
    if size > MAX_USER_METADATA:
        raise errors.MetadataTooLarge(f"The object's metadata would be {size} bytes with these wrapped keys; S3 "
                                      f"allows {MAX_USER_METADATA}.")
    return metadata


def kept_attributes(head: Mapping[str, Any]) -> dict[str, Any]:
    """The copy parameters that carry the object's attributes over (from boto3's HeadObject answer)."""
    if head.get("SSECustomerAlgorithm"):
        raise errors.InvalidArgument("The object is stored with SSE-C: it cannot be copied without its key.")
    params = {name: head[name] for name in _KEPT_FIELDS if head.get(name) is not None}
    expires = head.get("ExpiresString")
    if expires is not None:
        # botocore only parses Expires when it is a date; the raw value is what must survive.
        try:
            params["Expires"] = email.utils.parsedate_to_datetime(expires)
        except (TypeError, ValueError):
            raise errors.InvalidArgument("The object's Expires is not an HTTP date: the copy could not keep it."
                                         ) from None
    return params


def _copy_whole(s3: Any, bucket: str, key: str, etag: str, stored_total: int, params: dict[str, Any]) -> None:
    if stored_total > MAX_COPY_OBJECT_BYTES:
        raise errors.EntityTooLarge(
            "A one-request object over 5 GiB cannot be rewritten with one CopyObject, and copying it in parts would "
            "give it a multipart ETag that listings misread. The gateway never writes such objects.")
    _check_unchanged(s3, bucket, key, etag)
    # Tags are kept by CopyObject's default tagging directive (COPY).
    store_call(s3.copy_object, Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key},
               CopySourceIfMatch=etag, MetadataDirective="REPLACE", **params)


def _copy_in_parts(s3: Any, bucket: str, key: str, etag: str, stored_total: int, count: int,
                   params: dict[str, Any]) -> None:
    """M UploadPartCopy requests at the store's own part boundaries, completed as M parts: the same ETag."""
    sizes = _store_part_sizes(s3, bucket, key, etag, count)
    if sum(sizes) != stored_total:
        raise errors.PreconditionFailed()  # the parts described are not those of the object seen at HEAD
    ranges = store_part_ranges(sizes)
    if max(last - first + 1 for first, last in ranges) > MAX_COPY_OBJECT_BYTES:
        raise errors.EntityTooLarge("A store part is over S3's 5 GiB part limit.")
    tags = store_call(s3.get_object_tagging, Bucket=bucket, Key=key)["TagSet"]
    if tags:
        params = {**params, "Tagging": urlencode([(tag["Key"], tag["Value"]) for tag in tags])}
    upload_id = store_call(s3.create_multipart_upload, Bucket=bucket, Key=key, **params)["UploadId"]

    def copy_part(number: int) -> dict[str, Any]:
        first, last = ranges[number - 1]
        result = store_call(s3.upload_part_copy, Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                            CopySource={"Bucket": bucket, "Key": key}, CopySourceIfMatch=etag,
                            CopySourceRange=f"bytes={first}-{last}")
        return {"PartNumber": number, "ETag": result["CopyPartResult"]["ETag"]}

    try:
        with ThreadPoolExecutor(_PARALLEL_PART_REQUESTS) as pool:
            parts = list(pool.map(copy_part, range(1, count + 1)))
        _check_unchanged(s3, bucket, key, etag)
        store_call(s3.complete_multipart_upload, Bucket=bucket, Key=key, UploadId=upload_id, IfMatch=etag,
                   MultipartUpload={"Parts": parts})
    except BaseException:
        try:
            store_call(s3.abort_multipart_upload, Bucket=bucket, Key=key, UploadId=upload_id)
        except errors.S3Error:
            pass  # the store's lifecycle rule for incomplete uploads removes it; the object itself is intact
        raise


def _check_unchanged(s3: Any, bucket: str, key: str, etag: str) -> None:
    """PreconditionFailed if the object is no longer the one seen at HEAD. The copy's own conditions close the
    window on S3, but not every store honours `x-amz-copy-source-if-match` (moto ignores it) or If-Match on
    CompleteMultipartUpload: this check, just before the write, leaves such a store only a short one."""
    store_call(s3.head_object, Bucket=bucket, Key=key, IfMatch=etag)


def _store_part_sizes(s3: Any, bucket: str, key: str, etag: str, count: int) -> list[int]:
    """The sizes of the object's M store parts, from HeadObject `partNumber=1…M`."""
    def size(number: int) -> int:
        try:
            answer = store_call(s3.head_object, Bucket=bucket, Key=key, PartNumber=number)
        except (errors.NoSuchKey, errors.AccessDenied, errors.PreconditionFailed):
            raise
        except errors.S3Error:
            _check_unchanged(s3, bucket, key, etag)  # an object overwritten meanwhile may have other parts
            raise errors.UnsupportedFormat(
                f"The store cannot describe part {number} of this {count}-part object: its parts are not numbered "
                "1…M (a client skipped part numbers), or the store does not answer HeadObject with partNumber. "
                "Not rewritten (a copy through the gateway renumbers the parts).") from None
        if answer.get("PartsCount") not in (None, count):
            raise errors.PreconditionFailed()
        return answer["ContentLength"]

    with ThreadPoolExecutor(_PARALLEL_PART_REQUESTS) as pool:
        return list(pool.map(size, range(1, count + 1)))
