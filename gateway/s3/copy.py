"""The request headers of CopyObject and UploadPartCopy: source, range, metadata directive, conditions. Pure."""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote

from gateway import errors
from gateway.numerals import decimal

_COPY_RANGE = re.compile(r"\Abytes=([0-9]+)-([0-9]+)\Z", re.ASCII)
# x-amz-copy-source-if-* → the GET/HEAD condition the store evaluates against the source.
_CONDITIONS = {"x-amz-copy-source-if-match": "if-match", "x-amz-copy-source-if-none-match": "if-none-match",
               "x-amz-copy-source-if-modified-since": "if-modified-since",
               "x-amz-copy-source-if-unmodified-since": "if-unmodified-since"}


@dataclass(frozen=True)
class CopySource:
    bucket: str
    key: str
    version_id: str | None

    def header_value(self) -> str:
        """The x-amz-copy-source to send the store (URL-encoded, as S3 expects)."""
        value = quote(f"{self.bucket}/{self.key}", safe="/")
        return value + (f"?versionId={quote(self.version_id, safe='')}" if self.version_id else "")

    def query(self) -> list[tuple[str, str]]:
        return [("versionId", self.version_id)] if self.version_id else []


def parse_copy_source(value: str) -> CopySource:
    """`[/]bucket/key[?versionId=v]`, URL-encoded (a `?` inside the key arrives as %3F)."""
    path, _, query = value.partition("?")
    version_id = None
    if query:
        name, _, version = query.partition("=")
        if name != "versionId" or not version or "&" in version:
            raise errors.InvalidArgument("Unsupported copy source parameter.", ArgumentName="x-amz-copy-source")
        version_id = unquote(version)
    bucket, _, key = unquote(path).lstrip("/").partition("/")
    if not bucket or not key:
        raise errors.InvalidArgument("Copy Source must mention the source bucket and key: sourcebucket/sourcekey.",
                                     ArgumentName="x-amz-copy-source", ArgumentValue=value)
    if bucket.startswith("arn:"):
        raise errors.NotImplementedS3("Copy sources given as access point ARNs are not supported by this gateway.")
    return CopySource(bucket, key, version_id)


def copy_range(value: str | None) -> str | None:
    """x-amz-copy-source-range as a GET Range (plaintext offsets), or None to copy the whole source."""
    if value is None:
        return None
    match = _COPY_RANGE.match(value.strip())
    first, last = (decimal(match.group(1)), decimal(match.group(2))) if match else (None, None)
    if first is None or last is None or first > last:
        raise errors.InvalidArgument("The x-amz-copy-source-range value must be of the form bytes=first-last where "
                                     "first and last are the zero-based offsets of the first and last bytes to copy",
                                     ArgumentName="x-amz-copy-source-range", ArgumentValue=value)
    # Written back from the values read (capped), so whoever reads it next never meets a 5,000-digit numeral.
    return f"bytes={first}-{last}"


def metadata_directive(value: str | None) -> str:
    directive = (value or "COPY").strip().upper()
    if directive not in ("COPY", "REPLACE"):
        raise errors.InvalidArgument("Unknown metadata directive.", ArgumentName="x-amz-metadata-directive",
                                     ArgumentValue=value or "")
    return directive


def source_conditions(headers: Mapping[str, str]) -> dict[str, str]:
    """The copy's conditions on its source, as the headers of a GET/HEAD of the source."""
    return {plain: headers[name] for name, plain in _CONDITIONS.items() if name in headers}
