"""User metadata (x-amz-meta-*) and the names the gateway reserves there for its envelope. Pure.

The envelope (wrapped data keys, format header) is stored as user metadata under RESERVED_PREFIX. Clients
must never set those names (they could plant an envelope) nor see them (s3-tests compare metadata exactly),
and the envelope's bytes count against S3's 2 KB user-metadata limit like anyone else's.
"""
from __future__ import annotations

from collections.abc import Mapping

from gateway import errors

META_PREFIX = "x-amz-meta-"
RESERVED_PREFIX = "x-amz-meta-envelope-"
MAX_USER_METADATA = 2048  # bytes: UTF-8 of every name (without x-amz-meta-) plus every value


def _utf8_length(text: str) -> int:
    # aiohttp decodes header bytes as UTF-8 with surrogateescape: this counts the bytes as they came.
    return len(text.encode("utf-8", "surrogateescape"))


def check_client_metadata(headers: Mapping[str, str], reserved_bytes: int = 0) -> None:
    """Refuse a write whose metadata names a reserved field, or would not fit beside the envelope."""
    size = 0
    for name, value in headers.items():
        lname = name.lower()
        if not lname.startswith(META_PREFIX):
            continue
        if lname.startswith(RESERVED_PREFIX):
            raise errors.InvalidArgument(f"Metadata names starting with {RESERVED_PREFIX!r} are reserved by the "
                                         "encryption gateway.", ArgumentName=lname)
        size += _utf8_length(lname[len(META_PREFIX):]) + _utf8_length(value)
    if size + reserved_bytes > MAX_USER_METADATA:
        # Told in the client's terms: its own metadata, and what is left for it beside the envelope.
        raise errors.MetadataTooLarge(Size=str(size), MaxSizeAllowed=str(max(0, MAX_USER_METADATA - reserved_bytes)))


def envelope_fields(headers: Mapping[str, str]) -> dict[str, str]:
    """The envelope fields of an upstream response: {"envelope-header": ..., "envelope-key-0": ...}."""
    return {name.lower()[len(META_PREFIX):]: value for name, value in headers.items()
            if name.lower().startswith(RESERVED_PREFIX)}
