"""The envelope of format v1: the 68-byte header, the key schedule with key commitment, and the object metadata
that carries both the header and the wrapped copies of the data key (DEK). See docs/FORMAT.md.

Nothing here performs I/O or talks to KMS: the caller brings the plaintext DEK (from GenerateDataKey or Decrypt)
and gets back an opaque `ObjectKey` for `gateway.format.segments`. Key material never appears in a repr, a
message or an exception; the derived key lives only inside the AESGCM object.
"""
from __future__ import annotations

from typing import NoReturn

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from gateway import errors
from gateway.format.sizes import SEGMENT_SIZE_LOG2

FORMAT_VERSION = 1
SUITE_AES256GCM_HKDF_SHA256 = 1  # AES-256-GCM segments, HKDF-SHA256 key schedule, HKDF-Expand commitment
FLAG_MULTIPART_LAYOUT = 0x01  # the body is parts with keys of their own and a part table (FORMAT.md §12)

DEK_SIZE_BYTES = 32
SALT_SIZE_BYTES = 32
COMMITMENT_SIZE_BYTES = 32
OBJECT_KEY_SIZE_BYTES = 32
HEADER_SIZE_BYTES = 4 + SALT_SIZE_BYTES + COMMITMENT_SIZE_BYTES  # 68
BOUND_HEADER_SIZE_BYTES = 4 + SALT_SIZE_BYTES  # header[0:36]: every field except the commitment itself

# HKDF-Expand `info` labels. Each info is label ‖ header[0:36]; the two labels differ, so the object key and the
# commitment are independent outputs of one PRK (domain separation), and header[0:36] binds every parameter that
# selects an algorithm (version, suite, segment size, flags) plus the salt into both.
DATA_KEY_LABEL = b"envelope-gateway/v1/data-key"
COMMITMENT_LABEL = b"envelope-gateway/v1/commitment"
# Multipart layout: each part upload and the part table get keys of their own (info = label ‖ bound ‖ …).
PART_KEY_LABEL = b"envelope-gateway/v1/part-key"
TABLE_KEY_LABEL = b"envelope-gateway/v1/part-table"
PART_SALT_SIZE_BYTES = 32

META_PREFIX = "envelope-"
META_HEADER = "envelope-header"
META_KEY_PREFIX = "envelope-key-"

ENCRYPTION_CONTEXT_BUCKET = "envelope-gateway:bucket"
ENCRYPTION_CONTEXT_KEY = "envelope-gateway:key"

_HEADER_STRUCT = struct.Struct(f">BBBB{SALT_SIZE_BYTES}s{COMMITMENT_SIZE_BYTES}s")
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")
_SCHEME = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")
_KEY_ID = re.compile(r"^[\x21-\x3a\x3c-\x7e]+$")  # visible ASCII except ';' (the field separator)
_INDEX = re.compile(r"^(0|[1-9][0-9]{0,5})$")  # decimal, no leading zeros


# --- header ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Header:
    """The 68-byte v1 header: version ‖ suite ‖ segment_size_log2 ‖ flags ‖ salt(32) ‖ commitment(32).

    Neither the salt nor the commitment is secret. `decode` accepts only what this revision can read; a Header
    built directly is checked for shape only, and `open_object_key` re-checks the parameters.
    """
    version: int
    suite: int
    segment_size_log2: int
    flags: int
    salt: bytes
    commitment: bytes

    def __post_init__(self) -> None:
        for name in ("version", "suite", "segment_size_log2", "flags"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= 0xFF:
                raise ValueError(f"header field {name} must be an unsigned byte")
        if not isinstance(self.salt, bytes) or len(self.salt) != SALT_SIZE_BYTES:
            raise ValueError(f"header salt must be {SALT_SIZE_BYTES} bytes")
        if not isinstance(self.commitment, bytes) or len(self.commitment) != COMMITMENT_SIZE_BYTES:
            raise ValueError(f"header commitment must be {COMMITMENT_SIZE_BYTES} bytes")

    def bound_bytes(self) -> bytes:
        """header[0:36], the part that goes into both HKDF-Expand infos."""
        return _bound_prefix(self.version, self.suite, self.segment_size_log2, self.flags, self.salt)

    def encode(self) -> bytes:
        return _HEADER_STRUCT.pack(self.version, self.suite, self.segment_size_log2, self.flags, self.salt,
                                   self.commitment)

    @classmethod
    def decode(cls, data: bytes) -> Header:
        """Parse and check a stored header: UnsupportedFormat for parameters this revision cannot read,
        TamperedCiphertext for bytes that are not a header at all."""
        if len(data) == 0:
            raise errors.TamperedCiphertext("The object's envelope header is empty.")
        # The version is checked before the length: another version may define another header size.
        if data[0] != FORMAT_VERSION:
            raise errors.UnsupportedFormat(f"Unknown envelope format version {data[0]}.")
        if len(data) != HEADER_SIZE_BYTES:
            raise errors.TamperedCiphertext("The object's envelope header has the wrong length.")
        header = cls(*_HEADER_STRUCT.unpack(data))
        _check_supported(header)
        return header

    def __repr__(self) -> str:
        return (f"Header(version={self.version}, suite={self.suite}, segment_size_log2={self.segment_size_log2}, "
                f"flags={self.flags:#04x}, salt={self.salt.hex()[:16]}…, commitment={self.commitment.hex()[:16]}…)")


def _bound_prefix(version: int, suite: int, segment_size_log2: int, flags: int, salt: bytes) -> bytes:
    return _HEADER_STRUCT.pack(version, suite, segment_size_log2, flags, salt, bytes(COMMITMENT_SIZE_BYTES))[
        :BOUND_HEADER_SIZE_BYTES]


def _check_supported(header: Header) -> None:
    """UnsupportedFormat unless this revision reads objects with these parameters."""
    if header.version != FORMAT_VERSION:
        raise errors.UnsupportedFormat(f"Unknown envelope format version {header.version}.")
    if header.suite != SUITE_AES256GCM_HKDF_SHA256:
        raise errors.UnsupportedFormat(f"Unknown envelope cipher suite {header.suite}.")
    if header.segment_size_log2 != SEGMENT_SIZE_LOG2:
        raise errors.UnsupportedFormat(f"Unsupported envelope segment size 2^{header.segment_size_log2}.")
    if header.flags & ~FLAG_MULTIPART_LAYOUT:
        raise errors.UnsupportedFormat(f"Unknown envelope header flags {header.flags:#04x}.")


# --- wrapped data keys ----------------------------------------------------------------------------------------
@dataclass(frozen=True, repr=False)
class WrappedKey:
    """One wrapped copy of the DEK: `<scheme>;<key-id>;<base64url blob>` in metadata.

    v1 defines scheme `kms`: key_id is the KMS key ARN, blob the KMS CiphertextBlob (encryption context from
    `encryption_context`). Readers skip schemes they do not know. The blob is not secret, but it is long; the
    repr shows only its size.
    """
    scheme: str
    key_id: str
    blob: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.scheme, str) or not _SCHEME.match(self.scheme):
            raise ValueError("wrapped-key scheme must be lowercase [a-z0-9.+-] starting with a letter or digit")
        if not isinstance(self.key_id, str) or not _KEY_ID.match(self.key_id):
            raise ValueError("wrapped-key key id must be non-empty visible ASCII without ';'")
        if not isinstance(self.blob, bytes) or not self.blob:
            raise ValueError("wrapped-key blob must be non-empty bytes")

    def encode(self) -> str:
        return f"{self.scheme};{self.key_id};{_b64encode(self.blob)}"

    @classmethod
    def decode(cls, value: str) -> WrappedKey:
        """ValueError when malformed (parse_metadata turns that into TamperedCiphertext)."""
        parts = value.split(";")
        if len(parts) != 3:
            raise ValueError("wrapped key must have three ';'-separated fields")
        scheme, key_id, blob = parts
        return cls(scheme, key_id, _b64decode(blob))

    def __repr__(self) -> str:
        return f"WrappedKey(scheme={self.scheme!r}, key_id={self.key_id!r}, blob=<{len(self.blob)} bytes>)"


def encryption_context(bucket: str, key: str) -> dict[str, str]:
    """The KMS encryption context of an object's DEK. It names the object, so KMS refuses to unwrap a DEK read
    under another bucket or key: an object copied or swapped around the gateway fails closed."""
    return {ENCRYPTION_CONTEXT_BUCKET: bucket, ENCRYPTION_CONTEXT_KEY: key}


# --- metadata -------------------------------------------------------------------------------------------------
def metadata_for(header: Header, wrapped: list[WrappedKey]) -> dict[str, str]:
    """The gateway's user-metadata entries (names without `x-amz-meta-`), all lowercase names, ASCII values."""
    if not wrapped:
        raise ValueError("an object needs at least one wrapped data key")
    meta = {META_HEADER: header_value(header)}
    for index, entry in enumerate(wrapped):
        meta[f"{META_KEY_PREFIX}{index}"] = entry.encode()
    return meta


def header_value(header: Header) -> str:
    """The `envelope-header` metadata value: base64url without padding of the 68 bytes (91 characters)."""
    return _b64encode(header.encode())


def parse_metadata(meta: Mapping[str, str]) -> tuple[Header, list[WrappedKey]]:
    """Header and wrapped keys (in index order) from an object's user metadata (names without `x-amz-meta-`).

    NotEncrypted when there is neither a header nor any wrapped key; UnsupportedFormat for a version, suite,
    segment size or flag this revision cannot read; TamperedCiphertext for anything malformed. Other
    `envelope-*` names are ignored (reserved for later additions that do not change how data is decrypted).
    Wrapped keys whose scheme is unknown are returned too: choosing a usable one is the key service's job.
    """
    header_value: str | None = None
    indexed: dict[int, str] = {}
    seen: set[str] = set()
    for raw_name, value in meta.items():
        name = raw_name.lower()
        if not name.startswith(META_PREFIX):
            continue
        if name in seen:
            raise errors.TamperedCiphertext("The object's envelope metadata names a field twice.")
        seen.add(name)
        if name == META_HEADER:
            header_value = value
        elif name.startswith(META_KEY_PREFIX):
            suffix = name[len(META_KEY_PREFIX):]
            if not _INDEX.match(suffix):
                raise errors.TamperedCiphertext("The object's envelope metadata has a malformed wrapped-key name.")
            indexed[int(suffix)] = value
    if header_value is None:
        if indexed:
            raise errors.TamperedCiphertext("The object's envelope metadata has wrapped keys but no header.")
        raise errors.NotEncrypted()
    try:
        header_bytes = _b64decode(header_value)
    except ValueError:
        raise errors.TamperedCiphertext("The object's envelope header is not valid base64url.") from None
    header = Header.decode(header_bytes)
    wrapped: list[WrappedKey] = []
    for index in sorted(indexed):
        try:
            wrapped.append(WrappedKey.decode(indexed[index]))
        except ValueError:
            raise errors.TamperedCiphertext("The object's envelope metadata has a malformed wrapped key.") from None
    return header, wrapped


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    """Strict base64url without padding: alphabet only, canonical (re-encodes to the same text)."""
    if not isinstance(text, str) or not _B64URL.match(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not unpadded base64url") from None
    if _b64encode(data) != text:
        # Non-zero spare bits: another text for the same bytes. Refused so each value has one spelling.
        raise ValueError("non-canonical base64url")
    return data


# --- key schedule ---------------------------------------------------------------------------------------------
class ObjectKey:
    """The per-object AES-256-GCM key, derived from the DEK and the header. Opaque: it can seal and open segments
    (gateway.format.segments) and nothing else; it is neither printable nor picklable."""
    __slots__ = ("_aead",)

    def __init__(self, aead: AESGCM) -> None:
        self._aead = aead

    def __repr__(self) -> str:
        return "ObjectKey(<hidden>)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("ObjectKey cannot be pickled")


def _prk(dek: bytes, salt: bytes) -> bytes:
    # HKDF-Extract (RFC 5869 §2.2) with SHA-256: PRK = HMAC-SHA256(key=salt, msg=DEK).
    return hmac.new(salt, dek, hashlib.sha256).digest()


def _commitment(prk: bytes, bound: bytes) -> bytes:
    return HKDFExpand(hashes.SHA256(), COMMITMENT_SIZE_BYTES, COMMITMENT_LABEL + bound).derive(prk)


def _object_key(prk: bytes, bound: bytes) -> ObjectKey:
    # Derived into a bytearray that is wiped once AESGCM holds its own copy of the key.
    key = bytearray(OBJECT_KEY_SIZE_BYTES)
    try:
        HKDFExpand(hashes.SHA256(), OBJECT_KEY_SIZE_BYTES, DATA_KEY_LABEL + bound).derive_into(prk, key)
        return ObjectKey(AESGCM(key))
    finally:
        key[:] = bytes(OBJECT_KEY_SIZE_BYTES)


def new_object_key(dek: bytes, salt: bytes | None = None) -> tuple[Header, ObjectKey]:
    """A fresh header (random 32-byte salt unless given: tests and vectors only) and the object key for `dek`.

    Why a salt even though every object gets a fresh DEK from KMS: the object key stays unique per object even if
    a DEK is ever reused (a cached or bucket-level data key), and the nonces (a plain counter) rely on that.
    """
    header, prk = _new_header(dek, salt, 0)
    return header, _object_key(prk, header.bound_bytes())


def _new_header(dek: bytes, salt: bytes | None, flags: int) -> tuple[Header, bytes]:
    if len(dek) != DEK_SIZE_BYTES:
        raise ValueError(f"data key must be {DEK_SIZE_BYTES} bytes")
    if salt is None:
        salt = secrets.token_bytes(SALT_SIZE_BYTES)
    elif len(salt) != SALT_SIZE_BYTES:
        raise ValueError(f"salt must be {SALT_SIZE_BYTES} bytes")
    salt = bytes(salt)
    bound = _bound_prefix(FORMAT_VERSION, SUITE_AES256GCM_HKDF_SHA256, SEGMENT_SIZE_LOG2, flags, salt)
    prk = _prk(dek, salt)
    return Header(FORMAT_VERSION, SUITE_AES256GCM_HKDF_SHA256, SEGMENT_SIZE_LOG2, flags, salt,
                  _commitment(prk, bound)), prk


def open_object_key(dek: bytes, header: Header) -> ObjectKey:
    """The object key for a stored object, after checking the key commitment.

    The commitment is recomputed from the DEK and header[0:36] and compared in constant time before any segment
    is opened: a wrong or substituted DEK, or a header whose parameters or salt were changed, is refused here
    (TamperedCiphertext) rather than by a GCM tag later — and GCM alone is not key-committing.
    """
    if header.flags & FLAG_MULTIPART_LAYOUT:
        raise errors.UnsupportedFormat("The object has a multipart layout: it has no single object key.")
    return _object_key(_committed_prk(dek, header), header.bound_bytes())


def _committed_prk(dek: bytes, header: Header) -> bytes:
    _check_supported(header)
    if len(dek) != DEK_SIZE_BYTES:
        raise errors.TamperedCiphertext("The object's data key does not match its key commitment.")
    prk = _prk(dek, header.salt)
    if not hmac.compare_digest(_commitment(prk, header.bound_bytes()), header.commitment):
        raise errors.TamperedCiphertext("The object's data key does not match its key commitment.")
    return prk


class MultipartKeys:
    """The key schedule of a multipart-layout object (flags bit 0): a key per part upload and one for the part
    table, all HKDF-Expand outputs of the object's PRK. Opaque like ObjectKey; holds the PRK, never shows it."""
    __slots__ = ("_prk", "_bound")

    def __init__(self, prk: bytes, bound: bytes) -> None:
        self._prk, self._bound = prk, bound

    def __repr__(self) -> str:
        return "MultipartKeys(<hidden>)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("MultipartKeys cannot be pickled")

    def part_key(self, part_number: int, part_salt: bytes) -> ObjectKey:
        """The key of one part *upload*: the random part salt makes a re-uploaded part number (legal in S3) get
        a fresh key, so its segment nonces (which restart at 0) never repeat under one key."""
        if not 1 <= part_number <= 0xFFFFFFFF or len(part_salt) != PART_SALT_SIZE_BYTES:
            raise ValueError("part number must be 1..2^32-1 and the part salt 32 bytes")
        return self._derive(PART_KEY_LABEL + self._bound + part_number.to_bytes(4, "big") + part_salt)

    def table_key(self, table_salt: bytes) -> ObjectKey:
        """The key that seals the part table; fresh per Complete (a retried Complete writes a new table)."""
        if len(table_salt) != PART_SALT_SIZE_BYTES:
            raise ValueError("the table salt must be 32 bytes")
        return self._derive(TABLE_KEY_LABEL + self._bound + table_salt)

    def _derive(self, info: bytes) -> ObjectKey:
        key = bytearray(OBJECT_KEY_SIZE_BYTES)
        try:
            HKDFExpand(hashes.SHA256(), OBJECT_KEY_SIZE_BYTES, info).derive_into(self._prk, key)
            return ObjectKey(AESGCM(key))
        finally:
            key[:] = bytes(OBJECT_KEY_SIZE_BYTES)


def new_multipart_keys(dek: bytes, salt: bytes | None = None) -> tuple[Header, MultipartKeys]:
    """A fresh multipart-layout header (flags bit 0 set, so it is bound into the commitment) and its keys."""
    header, prk = _new_header(dek, salt, FLAG_MULTIPART_LAYOUT)
    return header, MultipartKeys(prk, header.bound_bytes())


def open_multipart_keys(dek: bytes, header: Header) -> MultipartKeys:
    """The keys of a stored multipart-layout object, after the same commitment check as open_object_key."""
    if not header.flags & FLAG_MULTIPART_LAYOUT:
        raise errors.UnsupportedFormat("The object does not have a multipart layout.")
    return MultipartKeys(_committed_prk(dek, header), header.bound_bytes())
