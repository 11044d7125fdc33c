"""Where a stored object comes from: its metadata (what `aws s3api head-object` prints, or boto3's HeadObject)
and its stored body, read from a file or straight from the store. Only bytes move here; nothing is decrypted.

Both kinds of body offer the same two reads: the last bytes (a multipart-layout object's part table) and one
sequential pass over the whole body, so that a decrypt holds a bounded amount of it, whatever its size.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from botocore.exceptions import BotoCoreError

from gateway import errors
from gateway.tools.aws import store_call


@dataclass(frozen=True)
class StoredObject:
    """What HeadObject says of a stored object: its user metadata (names without `x-amz-meta-`), its ETag (whose
    `-M` is the multipart layout's store part count) and its stored size, when known."""
    metadata: Mapping[str, str]
    etag: str
    stored_size_bytes: int | None


class Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...

    def close(self) -> None: ...


class StoredBody(Protocol):
    size_bytes: int

    def tail(self, length: int) -> bytes:
        """The last `length` bytes (at most size_bytes)."""

    def stream(self) -> Readable:
        """The whole body, from its first byte, for one sequential pass."""


def check_body_size(head: StoredObject, body: StoredBody) -> None:
    """TamperedCiphertext when the body is not as long as the object's metadata says."""
    if head.stored_size_bytes is not None and head.stored_size_bytes != body.size_bytes:
        raise errors.TamperedCiphertext(
            f"The stored body is {body.size_bytes} bytes but the object's metadata says {head.stored_size_bytes}: "
            "truncated, or not this object's body.")


def stored_object(head: Any, origin: str) -> StoredObject:
    """The fields of a HeadObject answer (boto3's dict, or the JSON `aws s3api head-object` prints)."""
    if not isinstance(head, dict) or not isinstance(head.get("Metadata"), dict):
        raise errors.InvalidArgument(f"{origin} is not what `aws s3api head-object` prints: it has no "
                                     "\"Metadata\" object.")
    metadata = head["Metadata"]
    etag, size = head.get("ETag", ""), head.get("ContentLength")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()) or not isinstance(etag, str) \
            or not (size is None or (isinstance(size, int) and size >= 0)):
        raise errors.InvalidArgument(f"{origin}: \"Metadata\", \"ETag\" or \"ContentLength\" has the wrong type.")
    return StoredObject(metadata, etag, size)


def load_head_json(path: str) -> StoredObject:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise errors.InvalidArgument(f"Cannot read --metadata {path}: {exc.strerror}.") from None
    try:
        head = json.loads(text)
    except ValueError:
        raise errors.InvalidArgument(f"--metadata {path} is not JSON (expected what `aws s3api head-object` "
                                     "prints).") from None
    return stored_object(head, f"--metadata {path}")


class FileBody:
    """A stored body in a local file (or any seekable binary stream: the tests use io.BytesIO)."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self.size_bytes = file.seek(0, os.SEEK_END)

    def tail(self, length: int) -> bytes:
        self._file.seek(self.size_bytes - length)
        return self._file.read(length)

    def stream(self) -> Readable:
        self._file.seek(0)
        return self._file


@contextmanager
def file_body(path: str) -> Iterator[FileBody]:
    try:
        file = open(path, "rb")
    except OSError as exc:
        raise errors.InvalidArgument(f"Cannot read --in {path}: {exc.strerror}.") from None
    with file:
        yield FileBody(file)


class StoreBody:
    """A stored body read straight from the store. Every GET carries If-Match with the ETag that HeadObject
    returned: the bytes decrypted belong to the metadata whose key decrypts them, even if the object is
    overwritten meanwhile (the GET then fails instead)."""

    def __init__(self, s3: Any, bucket: str, key: str, head: StoredObject) -> None:
        if head.stored_size_bytes is None:
            raise errors.UpstreamError("The object store's HeadObject answer has no Content-Length.")
        self._s3, self._bucket, self._key, self._etag = s3, bucket, key, head.etag
        self.size_bytes = head.stored_size_bytes

    def tail(self, length: int) -> bytes:
        if not length:
            return b""  # `bytes=-0` is not a range a store satisfies
        data = _StoreStream(self._get(Range=f"bytes=-{length}")).read(length + 1)
        if len(data) != length:
            raise errors.UpstreamError("The object store did not return the byte range asked for.")
        return data

    def stream(self) -> Readable:
        return _StoreStream(self._get())

    def _get(self, **params: str) -> Any:
        return store_call(self._s3.get_object, Bucket=self._bucket, Key=self._key, IfMatch=self._etag,
                          **params)["Body"]


class _StoreStream:
    """A GET's body; a connection that breaks or ends early mid-body is an error, not a short read."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def read(self, size: int) -> bytes:
        try:
            return self._body.read(size)
        except (BotoCoreError, OSError):
            raise errors.UpstreamError("The object store's response broke off; retry.") from None

    def close(self) -> None:
        self._body.close()


def head_from_store(s3: Any, bucket: str, key: str) -> StoredObject:
    return stored_object(store_call(s3.head_object, Bucket=bucket, Key=key), "The object store's HeadObject answer")


DIGEST_READ_BYTES = 1024 * 1024


def sha256_of(body: StoredBody) -> bytes:
    """SHA-256 of the whole stored body, read once front to back in 1 MiB reads (never held whole)."""
    digest, stream, left = hashlib.sha256(), body.stream(), body.size_bytes
    while left:
        piece = stream.read(min(left, DIGEST_READ_BYTES))
        if not piece:
            raise errors.TamperedCiphertext("The stored object is shorter than its recorded size.")
        digest.update(piece)
        left -= len(piece)
    return digest.digest()
