"""Signed shares (docs/FORMAT.md §17.5–§17.7): what is signed when an object is shared with a partner, the share
manifest that carries the signatures, and their verification.

The owner signs, with a KMS asymmetric key (Sign, RSASSA_PSS_SHA_256 or ECDSA_SHA_256), a *statement*: canonical
bytes naming the object (bucket, key), its stored body (size, the store's part count, SHA-256 of the ciphertext),
its envelope header and the partner's wrapped-key entry. The partner recomputes the statement from what they
actually downloaded and verifies it with the exported public key before decrypting anything. Every input of the
decryption is covered: the DEK (through the entry), the key schedule (the header) and every stored byte.

Pure: no KMS, no I/O (the tools bring the bytes, the digest and the signature). Verification needs only the
public key, so a partner needs neither KMS nor the gateway.
"""
from __future__ import annotations

import base64
import binascii
import json
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from gateway import errors
from gateway.format.partner import key_id_of

STATEMENT_LABEL = b"envelope-gateway/v1/share-statement"
MANIFEST_FORMAT = "envelope-gateway/share-manifest/v1"
RSA_PSS_SHA256 = "RSASSA_PSS_SHA_256"
ECDSA_SHA256 = "ECDSA_SHA_256"
# KMS Sign takes a RAW message of at most 4096 bytes; a statement is far below (a 1024-byte key, a 683-character
# RSA-4096 blob and the fixed fields come to about 1,900 bytes).
MAX_STATEMENT_BYTES = 4096


def _field(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def statement(bucket: str, key: str, stored_size_bytes: int, part_count: int, ciphertext_sha256: bytes,
              header_value: str, entry_value: str) -> bytes:
    """The signed bytes: label ‖ u16-prefixed bucket and key (UTF-8) ‖ be64 stored size ‖ be16 part count (the
    ETag's `-M`, 0 without one) ‖ SHA-256 of the stored body ‖ u16-prefixed `envelope-header` value ‖
    u16-prefixed partner entry value (ASCII, as stored). Length prefixes make every field boundary unambiguous."""
    if len(ciphertext_sha256) != 32 or not 0 <= part_count <= 0xFFFF or stored_size_bytes < 0:
        raise ValueError("digest must be 32 bytes, part count 0..65535, size non-negative")
    out = (STATEMENT_LABEL + _field(bucket.encode()) + _field(key.encode())
           + struct.pack(">QH", stored_size_bytes, part_count) + ciphertext_sha256
           + _field(header_value.encode("ascii")) + _field(entry_value.encode("ascii")))
    if len(out) > MAX_STATEMENT_BYTES:
        raise ValueError("share statement too long for KMS Sign")
    return out


class SignerPublicKey:
    """The owner's exported signing key: RSA of 2048 to 4096 bits (RSASSA-PSS, SHA-256) or NIST P-256 (ECDSA,
    SHA-256). The algorithm follows from the key; nothing in a manifest can choose a weaker one."""

    def __init__(self, public_key: Any) -> None:
        if isinstance(public_key, rsa.RSAPublicKey) and 2048 <= public_key.key_size <= 4096:
            self.algorithm = RSA_PSS_SHA256
        elif isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(public_key.curve, ec.SECP256R1):
            self.algorithm = ECDSA_SHA256
        else:
            raise errors.InvalidArgument("The signing public key must be RSA (2048 to 4096 bits) or EC P-256.")
        self._public_key = public_key
        self.key_id = key_id_of(public_key)

    @classmethod
    def from_pem(cls, pem: bytes, origin: str) -> SignerPublicKey:
        try:
            return cls(serialization.load_pem_public_key(pem))
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise errors.InvalidArgument(f"{origin} is not a PEM public key.") from None

    def verify(self, signed: bytes, signature: bytes) -> None:
        """TamperedCiphertext unless `signature` is this key's signature of `signed`.

        RSASSA-PSS: MGF1-SHA-256, the salt length read from the signature (AWS KMS uses 32 bytes; the salt
        length does not affect what a valid signature proves)."""
        try:
            if self.algorithm == RSA_PSS_SHA256:
                self._public_key.verify(signature, signed, padding.PSS(padding.MGF1(hashes.SHA256()),
                                                                       padding.PSS.AUTO), hashes.SHA256())
            else:
                self._public_key.verify(signature, signed, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise errors.TamperedCiphertext("The share's signature does not verify: the object, its wrapped key or "
                                            "the manifest was altered, or it was signed by another key.") from None

    def __repr__(self) -> str:
        return f"SignerPublicKey(key_id={self.key_id!r}, algorithm={self.algorithm})"


# --- the share manifest ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SharedObject:
    """One object of a share: what the statement was computed from, and its signature (None: unsigned)."""
    bucket: str
    key: str
    stored_size_bytes: int
    part_count: int
    ciphertext_sha256: bytes
    header_value: str
    entry_value: str
    signature: bytes | None

    def statement(self) -> bytes:
        return statement(self.bucket, self.key, self.stored_size_bytes, self.part_count, self.ciphertext_sha256,
                         self.header_value, self.entry_value)

    def to_json(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "key": self.key, "stored_size": self.stored_size_bytes,
                "part_count": self.part_count, "ciphertext_sha256": self.ciphertext_sha256.hex(),
                "envelope_header": self.header_value, "wrapped_key": self.entry_value,
                "signature": None if self.signature is None else base64.b64encode(self.signature).decode("ascii")}

    @classmethod
    def from_json(cls, item: Any) -> SharedObject:
        if not isinstance(item, dict):
            raise ValueError("object entry is not a JSON object")
        signature = item.get("signature")
        text_fields = ("bucket", "key", "envelope_header", "wrapped_key", "ciphertext_sha256")
        if not all(isinstance(item.get(name), str) for name in text_fields) \
                or not all(isinstance(item.get(name), int) for name in ("stored_size", "part_count")) \
                or not (signature is None or isinstance(signature, str)):
            raise ValueError("object entry has missing or mistyped fields")
        try:
            digest = bytes.fromhex(item["ciphertext_sha256"])
            signed = None if signature is None else base64.b64decode(signature, validate=True)
        except (ValueError, binascii.Error):
            raise ValueError("object entry has a malformed digest or signature") from None
        return cls(item["bucket"], item["key"], item["stored_size"], item["part_count"], digest,
                   item["envelope_header"], item["wrapped_key"], signed)


@dataclass(frozen=True)
class Signer:
    """Who signed: the KMS key's ARN, its public key's id (spelled as partner key ids, §17.2) and the algorithm."""
    kms_key_arn: str
    public_key_id: str
    algorithm: str


@dataclass(frozen=True)
class Manifest:
    recipient_key_id: str
    signer: Signer | None
    objects: tuple[SharedObject, ...]

    def encode(self) -> str:
        signer = None if self.signer is None else {"kms_key_arn": self.signer.kms_key_arn,
                                                   "public_key_id": self.signer.public_key_id,
                                                   "algorithm": self.signer.algorithm}
        return json.dumps({"format": MANIFEST_FORMAT, "recipient_key_id": self.recipient_key_id, "signer": signer,
                           "objects": [o.to_json() for o in self.objects]}, indent=1, sort_keys=True) + "\n"

    @classmethod
    def decode(cls, text: str, origin: str) -> Manifest:
        """InvalidArgument for a file that is not a manifest; UnsupportedFormat for another manifest version."""
        try:
            doc = json.loads(text)
        except ValueError:
            raise errors.InvalidArgument(f"{origin} is not JSON.") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("format"), str):
            raise errors.InvalidArgument(f"{origin} is not a share manifest.")
        if doc["format"] != MANIFEST_FORMAT:
            raise errors.UnsupportedFormat(f"{origin} is a share manifest of an unknown version ({doc['format']}).")
        signer = doc.get("signer")
        try:
            if not isinstance(doc.get("recipient_key_id"), str) or not isinstance(doc.get("objects"), list):
                raise ValueError("recipient_key_id or objects missing")
            parsed_signer = None if signer is None else Signer(str(signer["kms_key_arn"]),
                                                               str(signer["public_key_id"]),
                                                               str(signer["algorithm"]))
            objects = tuple(SharedObject.from_json(item) for item in doc["objects"])
        except (ValueError, KeyError, TypeError):
            raise errors.InvalidArgument(f"{origin} is not a valid share manifest.") from None
        return cls(doc["recipient_key_id"], parsed_signer, objects)

    def find(self, bucket: str, key: str) -> SharedObject | None:
        return next((o for o in self.objects if (o.bucket, o.key) == (bucket, key)), None)


_DIAGNOSED_FIELDS = (("ciphertext_sha256", "the stored ciphertext"), ("stored_size_bytes", "the stored size"),
                     ("part_count", "the store's part count (ETag -M)"), ("header_value", "the envelope header"),
                     ("entry_value", "the partner's wrapped key"))


def verify_shared(manifest: Manifest, signer_key: SignerPublicKey, actual: SharedObject) -> None:
    """Check that `actual` — the statement's fields as recomputed from what the partner downloaded (name given,
    metadata and body read; its signature is not used) — carries the owner's signature in the manifest.
    TamperedCiphertext on a missing or bad signature: the caller must not decrypt then.

    Only the recomputed statement is verified; the manifest's own copies of the fields serve to say which of
    them differs when the signature fails."""
    record = manifest.find(actual.bucket, actual.key)
    if record is None:
        raise errors.TamperedCiphertext("The share manifest has no entry for this bucket and key.")
    if manifest.signer is None or record.signature is None:
        raise errors.TamperedCiphertext("The share manifest has no signature for this object.")
    if (manifest.signer.public_key_id, manifest.signer.algorithm) != (signer_key.key_id, signer_key.algorithm):
        raise errors.TamperedCiphertext("The share manifest was signed by another key than the one given to "
                                        "verify it.")
    try:
        signer_key.verify(actual.statement(), record.signature)
    except errors.TamperedCiphertext:
        changed = [what for name, what in _DIAGNOSED_FIELDS if getattr(actual, name) != getattr(record, name)]
        if changed:
            raise errors.TamperedCiphertext(f"The share's signature does not verify: {changed[0]} differs from what "
                                            "was shared.") from None
        raise
