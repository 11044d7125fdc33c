"""`envelope-gateway share` and `export-signing-key`: give a partner an object's data key under their RSA public
key (FORMAT.md §17), optionally signed with a KMS asymmetric key, without a gateway.

Per object: KMS unwraps the DEK (the owner's `kms` or `kms-bucket-key` copy, datakey.KmsUnwrapper), the key
commitment is checked, the DEK is wrapped for the partner and added as one more `envelope-key-<i>` by an in-place
metadata rewrite (rewrite.rewrite_envelope: same body, same ETag part count, conditional on the ETag). Sharing
again with the same partner changes nothing; `share --revoke` removes the partner's entries. The share manifest
lists what was shared and, with a signing key, carries each object's signature over what the partner will
download (verify.observed_share).
"""
from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterator
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from gateway import errors
from gateway.format.envelope import (FLAG_MULTIPART_LAYOUT, Header, WrappedKey, encryption_context,
                                     open_multipart_keys, open_object_key, parse_metadata)
from gateway.format.partner import Recipient, entry_for
from gateway.format.signedshare import SharedObject, Signer, SignerPublicKey
from gateway.proxy.uploadstate import is_reserved_key
from gateway.tools.aws import kms_call, store_call
from gateway.tools.datakey import KmsUnwrapper, unwrap_data_key
from gateway.tools.rewrite import Outcome, rewrite_envelope
from gateway.tools.sources import StoreBody, head_from_store
from gateway.tools.verify import observed_share


class KmsSigner:
    """A KMS asymmetric key (key usage SIGN_VERIFY) that signs share statements (FORMAT.md §17.6). The algorithm
    follows from its public key: RSASSA_PSS_SHA_256 for RSA, ECDSA_SHA_256 for P-256; other keys are refused."""

    def __init__(self, kms: Any, key_id: str) -> None:
        self._kms = kms
        metadata = kms_call(kms.describe_key, KeyId=key_id)["KeyMetadata"]
        self.arn = metadata["Arn"]
        # Checked first: KMS refuses GetPublicKey for a symmetric key with an error that says less.
        if metadata.get("KeyUsage") != "SIGN_VERIFY":
            raise errors.InvalidArgument(f"The KMS key {self.arn} cannot sign: its key usage is not SIGN_VERIFY.")
        response = kms_call(kms.get_public_key, KeyId=self.arn)
        try:
            self.public_key = SignerPublicKey(serialization.load_der_public_key(response["PublicKey"]))
        except (ValueError, UnsupportedAlgorithm):
            raise errors.InvalidArgument(f"The KMS key {self.arn} has a public key this tool cannot use.") from None
        if self.public_key.algorithm not in response.get("SigningAlgorithms", []):
            raise errors.InvalidArgument(f"The KMS key {self.arn} does not offer {self.public_key.algorithm}.")
        self._der = response["PublicKey"]

    def sign(self, statement: bytes) -> bytes:
        signature = kms_call(self._kms.sign, KeyId=self.arn, Message=statement, MessageType="RAW",
                             SigningAlgorithm=self.public_key.algorithm)["Signature"]
        # Checked as the partner will check it: a signature the partner would refuse is never handed out.
        self.public_key.verify(statement, signature)
        return signature

    def signer(self) -> Signer:
        return Signer(self.arn, self.public_key.key_id, self.public_key.algorithm)

    def public_pem(self) -> str:
        key = serialization.load_der_public_key(self._der)
        return key.public_bytes(serialization.Encoding.PEM,
                                serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def _check_commitment(dek: bytes, header: Header) -> None:
    """Never hand a partner a DEK that does not open this object: TamperedCiphertext unless it matches the
    header's key commitment (FORMAT.md §5)."""
    (open_multipart_keys if header.flags & FLAG_MULTIPART_LAYOUT else open_object_key)(dek, header)


def add_partner_entry(s3: Any, owner: KmsUnwrapper, recipient: Recipient, bucket: str, key: str) -> bool:
    """Make sure the object has an entry for `recipient`; True if one was added now. NotEncrypted for an object
    not written through the gateway, MetadataTooLarge when the entry would not fit in S3's 2 KB (the rewrite
    checks: a share that does not fit is refused, never cut)."""
    head = head_from_store(s3, bucket, key)
    header, wrapped = parse_metadata(head.metadata)
    if entry_for(recipient.key_id, wrapped) is not None:
        return False
    dek = unwrap_data_key(wrapped, encryption_context(bucket, key), [owner])
    _check_commitment(dek, header)
    entry = recipient.wrap(dek, bucket, key)

    def update(current: Header, copies: list[WrappedKey]) -> list[WrappedKey] | None:
        if current != header:  # overwritten since: this DEK is not the object's any more
            raise errors.UpstreamError("The object changed while it was being shared; run share again.")
        return None if entry_for(recipient.key_id, copies) is not None else [*copies, entry]

    try:
        outcome = rewrite_envelope(s3, bucket, key, update)
    except errors.MetadataTooLarge as exc:  # S3's 2 KB for all user metadata (FORMAT.md §17.8)
        raise errors.MetadataTooLarge(f"{exc.message} The partner's entry does not fit: remove another partner's "
                                      "entry, or use a smaller RSA key (docs/KEYS.md).") from None
    if outcome is Outcome.NOT_ENCRYPTED:
        raise errors.NotEncrypted()
    return outcome is Outcome.REWRITTEN


def remove_partner_entry(s3: Any, recipient: Recipient, bucket: str, key: str) -> bool:
    """Remove the object's entries for `recipient`; True if there were any. Revokes future access only: whoever
    unwrapped the DEK before keeps it (docs/KEYS.md)."""
    def update(header: Header, copies: list[WrappedKey]) -> list[WrappedKey] | None:
        kept = [copy for copy in copies if entry_for(recipient.key_id, [copy]) is None]
        return None if len(kept) == len(copies) else kept

    outcome = rewrite_envelope(s3, bucket, key, update)
    if outcome is Outcome.NOT_ENCRYPTED:
        raise errors.NotEncrypted()
    return outcome is Outcome.REWRITTEN


def shared_object(s3: Any, recipient: Recipient, bucket: str, key: str, signer: KmsSigner | None) -> SharedObject:
    """The manifest's record of a shared object, as it is in the store now (its body read once, for the digest),
    signed when there is a signer."""
    head = head_from_store(s3, bucket, key)
    _, wrapped = parse_metadata(head.metadata)
    entry = entry_for(recipient.key_id, wrapped)
    if entry is None:
        raise errors.UpstreamError("The partner's entry is gone from the object (removed meanwhile?); run share "
                                   "again.")
    record = observed_share(bucket, key, head, StoreBody(s3, bucket, key, head), entry)
    if signer is None:
        return record
    return dataclasses.replace(record, signature=signer.sign(record.statement()))


def keys_under(s3: Any, bucket: str, prefix: str) -> Iterator[str]:
    """Every key under `prefix`, except the gateway's own state (`.envelope-gateway/`)."""
    token: str | None = None
    while True:
        page = store_call(s3.list_objects_v2, Bucket=bucket, Prefix=prefix,
                          **({"ContinuationToken": token} if token else {}))
        for item in page.get("Contents", []):
            if not is_reserved_key(item["Key"]):
                yield item["Key"]
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return


def share(s3: Any, owner: KmsUnwrapper, recipient: Recipient, bucket: str, keys: Iterator[str], *,
          skip_unencrypted: bool, signer: KmsSigner | None, with_records: bool) -> list[SharedObject]:
    """Share every key; one line per object on standard error. The first failure stops the run (objects shared
    before it stay shared; running again is harmless). Objects not written through the gateway are skipped when
    `skip_unencrypted` (a prefix), an error otherwise."""
    records = []

    def one(key: str) -> str:
        added = add_partner_entry(s3, owner, recipient, bucket, key)
        if with_records:
            records.append(shared_object(s3, recipient, bucket, key, signer))
        return "shared" if added else "already shared"

    _each(bucket, keys, one, skip_unencrypted)
    return records


def revoke(s3: Any, recipient: Recipient, bucket: str, keys: Iterator[str], *, skip_unencrypted: bool) -> None:
    """Remove the partner's entries from every key, as `share` adds them."""
    _each(bucket, keys, lambda key: "revoked" if remove_partner_entry(s3, recipient, bucket, key) else "not shared",
          skip_unencrypted)


def _each(bucket: str, keys: Iterator[str], action: Callable[[str], str], skip_unencrypted: bool) -> None:
    for key in keys:
        try:
            done = action(key)
        except errors.NotEncrypted:
            if not skip_unencrypted:
                raise errors.NotEncrypted(f"s3://{bucket}/{key} was not written through the gateway.") from None
            print(f"skipped s3://{bucket}/{key}: not written through the gateway", file=sys.stderr)
            continue
        except errors.S3Error as exc:
            exc.message = f"s3://{bucket}/{key}: {exc.message}"  # which object of a prefix failed
            raise
        print(f"{done} s3://{bucket}/{key}", file=sys.stderr)
