"""Wrapped-key scheme `rsa-oaep-sha256` (docs/FORMAT.md §17): the DEK wrapped for a partner's RSA public key.

A partner gets an object's DEK without KMS and without the gateway: one more `envelope-key-<i>` entry holds the
DEK encrypted with RSA-OAEP (SHA-256, MGF1-SHA-256) under the partner's public key. The entry's key-id names the
recipient key (`sha256:` + base64url of the SHA-256 of its DER SubjectPublicKeyInfo), so a reader with several
keys, or several partners' entries on one object, picks the right one without trying each.

Why the object's name is the OAEP label: as KMS's encryption context does for `kms` entries (§8), the label binds
the wrapped DEK to the bucket and key it was made for. An object swapped to another name around the gateway
(metadata and body together) does not unwrap under the name the partner asks for.

RSA keys of 2048 to 4096 bits only; PKCS#1 v1.5 encryption is never used (not for wrapping, not as a fallback on
reading: a v1.5 blob fails OAEP decoding like any tampered blob). Pure: no I/O. Key material never appears in a
repr, a message or an exception.
"""
from __future__ import annotations

from typing import NoReturn

import base64
import hashlib
import struct

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from gateway import errors
from gateway.format.envelope import DEK_SIZE_BYTES, WrappedKey

SCHEME_RSA_OAEP = "rsa-oaep-sha256"
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 4096
KEY_ID_PREFIX = "sha256:"
OAEP_LABEL_PREFIX = b"envelope-gateway/v1/rsa-oaep-dek"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def oaep_label(bucket: str, key: str) -> bytes:
    """label prefix ‖ u16 length ‖ bucket ‖ u16 length ‖ key (UTF-8, big-endian lengths): one label per name."""
    encoded_bucket, encoded_key = bucket.encode(), key.encode()
    return (OAEP_LABEL_PREFIX + struct.pack(">H", len(encoded_bucket)) + encoded_bucket
            + struct.pack(">H", len(encoded_key)) + encoded_key)


def _oaep(bucket: str, key: str) -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=oaep_label(bucket, key))


def _check_size(public_key: rsa.RSAPublicKey) -> None:
    if not MIN_RSA_BITS <= public_key.key_size <= MAX_RSA_BITS:
        raise errors.InvalidArgument(f"The partner's RSA key has {public_key.key_size} bits; keys of "
                                     f"{MIN_RSA_BITS} to {MAX_RSA_BITS} bits are accepted.")


def key_id_of(public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> str:
    """`sha256:` + base64url(SHA-256(DER SubjectPublicKeyInfo)): 50 characters, the same for the key's every PEM
    spelling (PKCS#1 or SPKI, the public or the private file). Also names the owner's signing key (§17.6)."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return KEY_ID_PREFIX + _b64url(hashlib.sha256(der).digest())


class Recipient:
    """A partner's RSA public key, checked: RSA, 2048 to 4096 bits."""

    def __init__(self, public_key: rsa.RSAPublicKey) -> None:
        _check_size(public_key)
        self._public_key = public_key
        self.key_id = key_id_of(public_key)
        self.size_bits = public_key.key_size

    @classmethod
    def from_pem(cls, pem: bytes, origin: str) -> Recipient:
        """A `PUBLIC KEY` (SPKI) or `RSA PUBLIC KEY` (PKCS#1) PEM; InvalidArgument for anything else."""
        try:
            public_key = serialization.load_pem_public_key(pem)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise errors.InvalidArgument(f"{origin} is not a PEM public key (expected -----BEGIN PUBLIC KEY-----)."
                                         ) from None
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise errors.InvalidArgument(f"{origin} is not an RSA key: partners need an RSA public key of "
                                         f"{MIN_RSA_BITS} to {MAX_RSA_BITS} bits.")
        return cls(public_key)

    def wrap(self, dek: bytes | bytearray, bucket: str, key: str) -> WrappedKey:
        """The entry for this partner: RSA-OAEP of the DEK, labelled with the object's name. Randomized: two
        wraps of one DEK differ."""
        if len(dek) != DEK_SIZE_BYTES:
            raise ValueError(f"data key must be {DEK_SIZE_BYTES} bytes")
        return WrappedKey(SCHEME_RSA_OAEP, self.key_id, self._public_key.encrypt(bytes(dek), _oaep(bucket, key)))

    def __repr__(self) -> str:
        return f"Recipient(key_id={self.key_id!r}, size_bits={self.size_bits})"


class PartnerPrivateKey:
    """A partner's RSA private key: unwraps the entries whose key-id is its own. Never printed."""
    __slots__ = ("_private_key", "key_id")

    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        _check_size(private_key.public_key())
        self._private_key = private_key
        self.key_id = key_id_of(private_key.public_key())

    @classmethod
    def from_pem(cls, pem: bytes, passphrase: bytes | None, origin: str) -> PartnerPrivateKey:
        """A PEM private key (PKCS#8 or PKCS#1, encrypted or not). InvalidArgument when it cannot be read, with
        a message that never quotes the file."""
        try:
            private_key = serialization.load_pem_private_key(pem, passphrase)
        except TypeError:  # encrypted without a passphrase, or a passphrase for an unencrypted key
            raise errors.InvalidArgument(f"{origin} is encrypted: give its passphrase (docs/KEYS.md)." if passphrase
                                         is None else f"{origin} is not encrypted, but a passphrase was given."
                                         ) from None
        except (ValueError, UnsupportedAlgorithm):
            raise errors.InvalidArgument(f"{origin} is not a PEM private key, or the passphrase is wrong.") from None
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise errors.InvalidArgument(f"{origin} is not an RSA private key.")
        return cls(private_key)

    def accepts(self, wrapped: WrappedKey) -> bool:
        return wrapped.scheme == SCHEME_RSA_OAEP and wrapped.key_id == self.key_id

    def unwrap(self, wrapped: WrappedKey, bucket: str, key: str) -> bytes:
        """The DEK; TamperedCiphertext when the blob does not open with this key under this name (another
        object's entry, a PKCS#1 v1.5 blob, altered bytes). The DEK is still to be checked against the header's
        key commitment by the caller."""
        if not self.accepts(wrapped):
            raise ValueError("not an entry for this key")
        try:
            dek = self._private_key.decrypt(wrapped.blob, _oaep(bucket, key))
        except ValueError:
            raise errors.TamperedCiphertext(
                "The partner's wrapped data key does not open with this private key under this bucket and key "
                "(an entry of another object, altered, or not RSA-OAEP).") from None
        if len(dek) != DEK_SIZE_BYTES:
            raise errors.TamperedCiphertext("The partner's wrapped data key is not a data key.")
        return dek

    def __repr__(self) -> str:
        return f"PartnerPrivateKey(key_id={self.key_id!r}, <hidden>)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("PartnerPrivateKey cannot be pickled")


def entry_for(recipient_key_id: str, wrapped: list[WrappedKey]) -> WrappedKey | None:
    """The object's entry for this recipient, if it has one (the first in index order)."""
    return next((w for w in wrapped if w.scheme == SCHEME_RSA_OAEP and w.key_id == recipient_key_id), None)
