"""Wrapped-key scheme `kms-bucket-key` (docs/FORMAT.md §16): per-object data keys derived from a bucket key.

One KMS data key per bucket and time window (the *bucket key*, wrapped by KMS under a context that names the
bucket only) stands in for a KMS call per object: each object's DEK is HKDF(bucket key, a random per-object salt,
the object's bucket and key). The metadata entry carries the salt and the KMS-wrapped bucket key, so a reader
needs one KMS Decrypt per bucket key (cacheable), not one per object.

Why the name goes into the derivation: with a per-object KMS context (scheme `kms`, §8) it is KMS that refuses an
object swapped to another name; here the bucket key's context names only the bucket, so the object name must
enter the DEK itself. A swapped object then derives a different DEK and fails its key commitment. A copy under a
new name therefore cannot keep this entry: copies get a `kms` entry (KMS Encrypt of the DEK) instead.

Pure: no I/O, no KMS. Key material never appears in a repr, a message or an exception.
"""
from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway import errors
from gateway.format.envelope import DEK_SIZE_BYTES, ENCRYPTION_CONTEXT_BUCKET

SCHEME_BUCKET_KEY = "kms-bucket-key"
BLOB_VERSION = 1
OBJECT_SALT_SIZE_BYTES = 32
BUCKET_KEY_SIZE_BYTES = 32
DEK_LABEL = b"envelope-gateway/v1/bucket-key-dek"
# The bucket key's KMS encryption context: the bucket, and a marker that no per-object context has, so a bucket
# key blob can never pass for an object's `kms` DEK blob (whose context has envelope-gateway:key) or vice versa.
ENCRYPTION_CONTEXT_BUCKET_KEY = "envelope-gateway:bucket-key"
BUCKET_KEY_CONTEXT_VALUE = "v1"


def bucket_key_context(bucket: str) -> dict[str, str]:
    return {ENCRYPTION_CONTEXT_BUCKET: bucket, ENCRYPTION_CONTEXT_BUCKET_KEY: BUCKET_KEY_CONTEXT_VALUE}


def dek_info(bucket: str, key: str) -> bytes:
    """label ‖ u16 length ‖ bucket ‖ u16 length ‖ key (UTF-8, big-endian lengths): unambiguous for any names."""
    encoded_bucket, encoded_key = bucket.encode(), key.encode()
    return (DEK_LABEL + struct.pack(">H", len(encoded_bucket)) + encoded_bucket
            + struct.pack(">H", len(encoded_key)) + encoded_key)


def new_object_salt() -> bytes:
    """salt_o: 32 bytes from a CSPRNG, fresh for every object."""
    return secrets.token_bytes(OBJECT_SALT_SIZE_BYTES)


def derive_dek(bucket_key: bytes | bytearray, salt: bytes, bucket: str, key: str) -> bytes:
    """The object's DEK: HKDF-SHA256(IKM = bucket key, salt = the object's salt, info = dek_info, L = 32)."""
    if len(bucket_key) != BUCKET_KEY_SIZE_BYTES or len(salt) != OBJECT_SALT_SIZE_BYTES:
        raise ValueError("bucket key and salt must be 32 bytes each")
    return HKDF(hashes.SHA256(), DEK_SIZE_BYTES, salt, dek_info(bucket, key)).derive(bytes(bucket_key))


@dataclass(frozen=True)
class BucketKeyBlob:
    """The `blob` of a `kms-bucket-key` entry: version (1 byte, 0x01) ‖ object salt (32) ‖ the bucket key's KMS
    CiphertextBlob (the rest, non-empty)."""
    salt: bytes
    wrapped_bucket_key: bytes

    def encode(self) -> bytes:
        return bytes([BLOB_VERSION]) + self.salt + self.wrapped_bucket_key

    @classmethod
    def decode(cls, blob: bytes) -> BucketKeyBlob:
        if not blob or blob[0] != BLOB_VERSION:
            raise errors.UnsupportedFormat("Unknown bucket-key entry version.")
        if len(blob) <= 1 + OBJECT_SALT_SIZE_BYTES:
            raise errors.TamperedCiphertext("The object's bucket-key entry is too short.")
        return cls(blob[1:1 + OBJECT_SALT_SIZE_BYTES], blob[1 + OBJECT_SALT_SIZE_BYTES:])

    def __repr__(self) -> str:
        return f"BucketKeyBlob(salt={self.salt.hex()[:16]}…, wrapped_bucket_key={len(self.wrapped_bucket_key)} bytes)"
