"""A signed share as the partner checks it (docs/FORMAT.md §17.6): before `decrypt --verify-key` opens anything,
the statement is recomputed from what was downloaded — the name asked for, the object's metadata, SHA-256 of its
stored body — and its signature in the share manifest verified with the owner's exported public key. The owner's
`share` computes the same statement from the store (`observed_share`)."""
from __future__ import annotations

from gateway import errors
from gateway.format.envelope import WrappedKey, header_value, parse_metadata
from gateway.format.partner import PartnerPrivateKey, entry_for
from gateway.format.signedshare import Manifest, SharedObject, SignerPublicKey, verify_shared
from gateway.s3.multipart_xml import multipart_part_count
from gateway.tools.sources import StoredBody, StoredObject, check_body_size, sha256_of


def observed_share(bucket: str, key: str, head: StoredObject, body: StoredBody, entry: WrappedKey) -> SharedObject:
    """The statement's fields for `entry` of this stored object, as read (no signature). Reads the whole body."""
    header, _ = parse_metadata(head.metadata)
    return SharedObject(bucket, key, body.size_bytes, multipart_part_count(head.etag) or 0, sha256_of(body),
                        header_value(header), entry.encode(), None)


def verified_entry(head: StoredObject, body: StoredBody, bucket: str, key: str, manifest: Manifest,
                   signer: SignerPublicKey, private_key: PartnerPrivateKey) -> WrappedKey:
    """The partner's entry of this object, once the manifest's signature over the object as downloaded verifies;
    TamperedCiphertext (exit 1) otherwise. Decrypt only with this entry (PartnerUnwrapper(only=…))."""
    check_body_size(head, body)
    _, wrapped = parse_metadata(head.metadata)
    entry = entry_for(private_key.key_id, wrapped)
    if entry is None:
        raise errors.UnsupportedFormat(f"No usable wrapped key: the object has no copy of its data key for the "
                                       f"private key {private_key.key_id}.")
    verify_shared(manifest, signer, observed_share(bucket, key, head, body, entry))
    return entry
