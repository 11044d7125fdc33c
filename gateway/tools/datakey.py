"""Which wrapped copy of an object's data key to use, and how to unwrap it.

An object's metadata may hold several wrapped copies of its DEK (`envelope-key-0`, `-1`, …), each under a
*scheme* (FORMAT.md §3). A reader is given a list of unwrappers, one per way it can unwrap (KMS `Decrypt`, or a
partner's private key); `unwrap_data_key` pairs them with the copies and returns the first DEK one of them yields.
Another scheme is one more unwrapper class here, and nothing else changes. The DEK returned is
not yet checked: the caller opens the object's keys with it, which verifies the key commitment first.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from gateway import errors
from gateway.format.bucketkey import SCHEME_BUCKET_KEY, BucketKeyBlob, bucket_key_context, derive_dek
from gateway.format.envelope import ENCRYPTION_CONTEXT_BUCKET, ENCRYPTION_CONTEXT_KEY, WrappedKey
from gateway.format.partner import PartnerPrivateKey
from gateway.keys.kms import KMS_SCHEME
from gateway.tools.aws import kms_call


class Unwrapper(Protocol):
    def accepts(self, wrapped: WrappedKey) -> bool:
        """Whether this unwrapper may be asked for this copy (its scheme, and any key it is pinned to)."""

    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> bytes:
        """The plaintext DEK; a gateway error (TamperedCiphertext, KMSError, …) if it cannot be had."""

    def describe(self) -> str:
        """What it can unwrap, for the "no usable wrapped key" message."""


class KmsUnwrapper:
    """Copies of scheme `kms`, unwrapped by KMS Decrypt under the object's encryption context, and of scheme
    `kms-bucket-key`, whose bucket key KMS unwraps and the object's DEK is derived from.

    Pinned to `key_id` (an id, ARN or alias, resolved once with DescribeKey), only copies wrapped by that key are
    used: FORMAT.md §8 — whoever can write to the store could plant an object wrapped under a key of their own.
    Unpinned, the key ARN recorded in the copy is used as it stands.
    """

    def __init__(self, kms: Any, key_id: str | None = None) -> None:
        self._kms = kms
        self._pinned_arn = None if key_id is None else kms_call(kms.describe_key, KeyId=key_id)["KeyMetadata"]["Arn"]

    def accepts(self, wrapped: WrappedKey) -> bool:
        return wrapped.scheme in (KMS_SCHEME, SCHEME_BUCKET_KEY) and self._pinned_arn in (None, wrapped.key_id)

    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> bytes:
        if wrapped.scheme == SCHEME_BUCKET_KEY:
            # FORMAT.md §16: the bucket key under its own context, then the object's DEK derived from it.
            entry = BucketKeyBlob.decode(wrapped.blob)
            bucket, key = context[ENCRYPTION_CONTEXT_BUCKET], context[ENCRYPTION_CONTEXT_KEY]
            bucket_key = kms_call(self._kms.decrypt, CiphertextBlob=entry.wrapped_bucket_key, KeyId=wrapped.key_id,
                                  EncryptionContext=bucket_key_context(bucket))["Plaintext"]
            return derive_dek(bucket_key, entry.salt, bucket, key)
        return kms_call(self._kms.decrypt, CiphertextBlob=wrapped.blob, KeyId=wrapped.key_id,
                        EncryptionContext=dict(context))["Plaintext"]

    def describe(self) -> str:
        return "KMS copies" + (f" wrapped by {self._pinned_arn}" if self._pinned_arn else "")


class PartnerUnwrapper:
    """Copies of scheme `rsa-oaep-sha256` made for this private key (FORMAT.md §17): unwrapped offline, no KMS.

    Given `only` (the entry a share's signature was verified for), no other copy is used: the DEK decrypted with
    is then the one the signature covers.
    """

    def __init__(self, private_key: PartnerPrivateKey, only: WrappedKey | None = None) -> None:
        self._private_key, self._only = private_key, only

    def accepts(self, wrapped: WrappedKey) -> bool:
        return self._private_key.accepts(wrapped) and self._only in (None, wrapped)

    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> bytes:
        return self._private_key.unwrap(wrapped, context[ENCRYPTION_CONTEXT_BUCKET], context[ENCRYPTION_CONTEXT_KEY])

    def describe(self) -> str:
        return f"partner copies for the private key {self._private_key.key_id}"


def unwrap_data_key(wrapped: Sequence[WrappedKey], context: Mapping[str, str],
                    unwrappers: Sequence[Unwrapper]) -> bytes:
    """The DEK from the first copy (in index order) that an unwrapper accepts and can unwrap.

    When every attempt fails, the first copy's error is raised (copy 0 is the writer's own). No usable copy at all
    is UnsupportedFormat ("no usable wrapped key", FORMAT.md §3).
    """
    attempts = [(unwrapper, copy) for copy in wrapped for unwrapper in unwrappers if unwrapper.accepts(copy)]
    if not attempts:
        found = ", ".join(f"{copy.scheme} ({copy.key_id})" for copy in wrapped) or "none"
        can = " or ".join(unwrapper.describe() for unwrapper in unwrappers)
        raise errors.UnsupportedFormat(f"No usable wrapped key: the object's data key copies are {found}; "
                                       f"this command can use {can}.")
    first_failure: errors.S3Error | None = None
    for unwrapper, copy in attempts:
        try:
            return unwrapper.unwrap(copy, context)
        except errors.S3Error as exc:
            first_failure = first_failure or exc
    assert first_failure is not None
    raise first_failure
