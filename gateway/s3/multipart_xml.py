"""The XML of multipart uploads and copies, read from clients and the store and written for them. Pure.

Upstream and client documents alike are untrusted: parsed with defusedxml only (see gateway.s3.xml).
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from xml.etree.ElementTree import Element

from gateway import errors
from gateway.numerals import decimal
from gateway.s3.xml import (DECLARATION, S3_NAMESPACE, _child_text, _serialise, _split, _text, children,
                            client_document, leaf_text, store_document)

MAX_PART_NUMBER = 10_000
# DeleteObjects names at most 1,000 objects; S3 answers MalformedXML for more.
MAX_DELETE_OBJECTS = 1000
# Part elements of a CompleteMultipartUpload body: the checksums are the client's and are not forwarded (the
# store's parts are ciphertext), but a newer SDK's Checksum<Algorithm> must not be MalformedXML.
_PART_FIELDS = ("PartNumber", "ETag", "ChecksumCRC32", "ChecksumCRC32C", "ChecksumCRC64NVME", "ChecksumSHA1",
                "ChecksumSHA256", "ChecksumSHA512", "ChecksumMD5", "ChecksumXXHASH64", "ChecksumXXHASH3",
                "ChecksumXXHASH128")
# Object elements of a DeleteObjects body, in the order S3 documents them; all but Key are conditions.
_DELETE_FIELDS = ("Key", "VersionId", "ETag", "LastModifiedTime", "Size")


def _root(body: bytes, what: str) -> Element:
    return store_document(body, f"a {what}")


def normalise_etag(etag: str) -> str:
    """ETags as compared between a client's Complete body, the store and the gateway's part records: without
    quotes and surrounding space (clients send them quoted, unquoted, or as &quot;-escaped)."""
    return etag.strip().strip('"').strip()


def multipart_part_count(etag: str) -> int | None:
    """M of a multipart ETag `"<hex>-M"` (the number of parts the store completed the object from), or None for
    any other ETag."""
    _, dash, count = etag.strip().strip('"').rpartition("-")
    # Capped just past S3's limit: a count of any length stays impossible for the layout arithmetic (which then
    # refuses it) without int()'s ValueError past 4,300 digits.
    return decimal(count, cap=MAX_PART_NUMBER + 1) if dash and count[:1] != "0" else None


def parse_upload_id(body: bytes) -> str:
    """UploadId from the store's InitiateMultipartUploadResult."""
    root = _root(body, "CreateMultipartUpload response")
    upload_id = (_child_text(root, "UploadId") or "").strip()
    if not upload_id:
        raise errors.UpstreamError("The object store's CreateMultipartUpload response has no UploadId.")
    return upload_id


def parse_complete_request(body: bytes) -> list[tuple[int, str]]:
    """(part number, ETag) of a client's CompleteMultipartUpload body, in order; S3's errors for bad lists.
    Held strictly (see client_document): one PartNumber and one ETag per Part, nothing but Parts in the list."""
    root = client_document(body, "CompleteMultipartUpload")
    parts: list[tuple[int, str]] = []
    for elem in children(root, (), ("Part",)).get("Part", []):
        fields = children(elem, _PART_FIELDS)
        if "PartNumber" not in fields or "ETag" not in fields:
            raise errors.MalformedXML()
        number = leaf_text(fields["PartNumber"][0]).strip()
        etag = leaf_text(fields["ETag"][0])
        part_number = decimal(number, cap=MAX_PART_NUMBER + 1)
        if part_number is None:
            raise errors.MalformedXML()
        if not 1 <= part_number <= MAX_PART_NUMBER:
            raise errors.InvalidArgument("Part number must be an integer between 1 and 10000, inclusive.",
                                         ArgumentName="partNumber", ArgumentValue=str(part_number))
        if parts and part_number <= parts[-1][0]:
            raise errors.InvalidPartOrder()
        parts.append((part_number, normalise_etag(etag)))
    if not parts:
        raise errors.MalformedXML()
    return parts


def complete_request_body(parts: list[tuple[int, str]]) -> bytes:
    """The CompleteMultipartUpload body the gateway sends the store (its own part ETags, no checksums)."""
    inner = "".join(f"<Part><PartNumber>{number}</PartNumber><ETag>\"{_text(etag)}\"</ETag></Part>"
                    for number, etag in parts)
    return DECLARATION + f'<CompleteMultipartUpload xmlns="{S3_NAMESPACE}">{inner}</CompleteMultipartUpload>'.encode()


def without_checksums(body: bytes, what: str) -> bytes:
    """A result document (CompleteMultipartUpload, CopyObject, UploadPartCopy) without Checksum* elements: the
    store's checksums are of ciphertext; the client's were verified over plaintext and are not the store's."""
    root = _root(body, what)
    for elem in list(root):
        if _split(elem.tag)[1].startswith("Checksum"):
            root.remove(elem)
    return DECLARATION + _serialise(root).encode("utf-8")


def result_etag(body: bytes, what: str) -> str:
    root = _root(body, what)
    etag = _child_text(root, "ETag")
    if etag is None:
        raise errors.UpstreamError(f"The object store's {what} has no ETag.")
    return normalise_etag(etag)


def copy_part_result(etag: str, last_modified: str) -> bytes:
    return DECLARATION + (f'<CopyPartResult xmlns="{S3_NAMESPACE}"><LastModified>{_text(last_modified)}'
                          f'</LastModified><ETag>"{_text(etag)}"</ETag></CopyPartResult>').encode()


def complete_result(location: str, bucket: str, key: str, etag: str) -> bytes:
    return DECLARATION + (f'<CompleteMultipartUploadResult xmlns="{S3_NAMESPACE}"><Location>{_text(location)}'
                          f'</Location><Bucket>{_text(bucket)}</Bucket><Key>{_text(key)}</Key>'
                          f'<ETag>"{_text(etag)}"</ETag></CompleteMultipartUploadResult>').encode()


def http_date_iso(epoch_seconds: float) -> str:
    """LastModified as S3 writes it in XML: 2026-11-27T08:18:00.000Z."""
    moment = datetime.datetime.fromtimestamp(epoch_seconds, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def list_keys(body: bytes) -> tuple[list[str], str | None]:
    """Keys of a ListObjectsV2 page and its NextContinuationToken (None on the last page)."""
    root = _root(body, "listing")
    keys = [(_child_text(entry, "Key") or "") for entry in root if _split(entry.tag)[1] == "Contents"]
    truncated = (_child_text(root, "IsTruncated") or "").strip().lower() == "true"
    token = _child_text(root, "NextContinuationToken")
    return keys, (token if truncated and token else None)


def delete_objects_body(keys: list[str]) -> bytes:
    inner = "".join(f"<Object><Key>{_text(key)}</Key></Object>" for key in keys)
    return DECLARATION + f'<Delete xmlns="{S3_NAMESPACE}"><Quiet>true</Quiet>{inner}</Delete>'.encode()


@dataclass(frozen=True)
class DeleteEntry:
    key: str
    conditions: tuple[tuple[str, str], ...] = ()  # (VersionId | ETag | LastModifiedTime | Size, text), in order


@dataclass(frozen=True)
class DeleteRequest:
    quiet: bool | None  # None: the client did not say (S3's default, verbose)
    objects: tuple[DeleteEntry, ...]

    def body(self) -> bytes:
        """The DeleteObjects body the gateway sends the store: written from what it checked, never the client's
        bytes (a store could read a duplicate element or an odd construct differently from the gateway)."""
        quiet = "" if self.quiet is None else f"<Quiet>{'true' if self.quiet else 'false'}</Quiet>"
        entries = "".join(
            f"<Object><Key>{_text(entry.key)}</Key>"
            + "".join(f"<{name}>{_text(value)}</{name}>" for name, value in entry.conditions) + "</Object>"
            for entry in self.objects)
        return DECLARATION + f'<Delete xmlns="{S3_NAMESPACE}">{quiet}{entries}</Delete>'.encode("utf-8")


def parse_delete_request(body: bytes) -> DeleteRequest:
    """A client's DeleteObjects body, strictly: MalformedXML for anything the gateway would have to guess at
    (a second Key in an Object, an unknown element, a DTD, mixed namespaces, no objects or more than 1,000)."""
    root = client_document(body, "Delete")
    fields = children(root, ("Quiet",), ("Object",))
    quiet = None
    if "Quiet" in fields:
        text = leaf_text(fields["Quiet"][0]).strip().lower()
        if text not in ("true", "false"):
            raise errors.MalformedXML()
        quiet = text == "true"
    objects = fields.get("Object", [])
    if not 1 <= len(objects) <= MAX_DELETE_OBJECTS:
        raise errors.MalformedXML()
    entries = []
    for elem in objects:
        named = children(elem, _DELETE_FIELDS)
        if "Key" not in named:
            raise errors.MalformedXML()
        conditions = tuple((name, leaf_text(named[name][0])) for name in _DELETE_FIELDS[1:] if name in named)
        entries.append(DeleteEntry(leaf_text(named["Key"][0]), conditions))
    return DeleteRequest(quiet, tuple(entries))
