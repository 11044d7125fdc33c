"""The XML of multipart uploads and copies, read from clients and the store and written for them. Pure.

Upstream and client documents alike are untrusted: parsed with defusedxml only (see gateway.s3.xml).
"""
from __future__ import annotations

import datetime
import re
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from gateway import errors
from gateway.s3.xml import DECLARATION, S3_NAMESPACE, _child_text, _parse, _serialise, _split, _text

MAX_PART_NUMBER = 10_000
_DIGITS = re.compile(r"^[0-9]{1,5}$")


def _root(body: bytes, what: str) -> Element:
    try:
        return _parse(body)
    except (SafeET.ParseError, DefusedXmlException, ValueError):
        raise errors.InternalError(f"The object store returned a {what} the gateway could not read.") from None


def normalise_etag(etag: str) -> str:
    """ETags as compared between a client's Complete body, the store and the gateway's part records: without
    quotes and surrounding space (clients send them quoted, unquoted, or as &quot;-escaped)."""
    return etag.strip().strip('"').strip()


def multipart_part_count(etag: str) -> int | None:
    """M of a multipart ETag `"<hex>-M"` (the number of parts the store completed the object from), or None for
    any other ETag."""
    _, dash, count = etag.strip().strip('"').rpartition("-")
    return int(count) if dash and count.isascii() and count.isdigit() and count[0] != "0" else None


def parse_upload_id(body: bytes) -> str:
    """UploadId from the store's InitiateMultipartUploadResult."""
    root = _root(body, "CreateMultipartUpload response")
    upload_id = (_child_text(root, "UploadId") or "").strip()
    if not upload_id:
        raise errors.InternalError("The object store's CreateMultipartUpload response has no UploadId.")
    return upload_id


def parse_complete_request(body: bytes) -> list[tuple[int, str]]:
    """(part number, ETag) of a client's CompleteMultipartUpload body, in order; S3's errors for bad lists."""
    try:
        root = _parse(body)
    except (SafeET.ParseError, DefusedXmlException, ValueError):
        raise errors.MalformedXML() from None
    if _split(root.tag)[1] != "CompleteMultipartUpload":
        raise errors.MalformedXML()
    parts: list[tuple[int, str]] = []
    for elem in root:
        if _split(elem.tag)[1] != "Part":
            continue
        number = (_child_text(elem, "PartNumber") or "").strip()
        etag = _child_text(elem, "ETag")
        if not _DIGITS.match(number) or etag is None:
            raise errors.MalformedXML()
        part_number = int(number)
        if not 1 <= part_number <= MAX_PART_NUMBER:
            raise errors.InvalidArgument("Part number must be an integer between 1 and 10000, inclusive.",
                                         ArgumentName="partNumber", ArgumentValue=number)
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
        raise errors.InternalError(f"The object store's {what} has no ETag.")
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


def delete_request_keys(body: bytes) -> list[str]:
    """The keys a client's DeleteObjects body names. MalformedXML if the gateway cannot read it: a body the
    gateway cannot check (a DTD, say) must not reach a store that might read it differently."""
    try:
        root = _parse(body)
    except (SafeET.ParseError, DefusedXmlException, ValueError):
        raise errors.MalformedXML() from None
    return [_child_text(entry, "Key") or "" for entry in root if _split(entry.tag)[1] == "Object"]
