"""Which ciphertext bytes to ask the store for, before the object's size is known. Pure arithmetic.

A ranged GET must cost one upstream request, not a HEAD and then a GET: the plaintext range is mapped onto
the segments that cover it for every possible object size, the store answers with the total ciphertext size in
`Content-Range`, and the exact plaintext range is then settled with `gateway.s3.ranges.parse_range`.
"""
from __future__ import annotations

import re

from gateway.format.sizes import SEALED_SEGMENT_SIZE_BYTES, SEGMENT_SIZE_BYTES
from gateway.numerals import decimal

# ASCII digits only (re's \d also matches "١", which int() reads); numerals of any length are read with
# decimal(), capped, so a 5,000-digit offset is a huge offset rather than int()'s ValueError.
_RANGE = re.compile(r"^\s*bytes\s*=\s*([0-9]*)\s*-\s*([0-9]*)\s*$", re.IGNORECASE | re.ASCII)
_CONTENT_RANGE = re.compile(r"^bytes ([0-9]{1,19})-([0-9]{1,19})/([0-9]{1,19})$", re.ASCII)


def _int(numeral: str) -> int:
    value = decimal(numeral)
    assert value is not None  # only called on a non-empty [0-9]* group
    return value


def upstream_range(range_value: str | None, plaintext_possible: bool = False) -> str | None:
    """The `Range` to send upstream for a client's `Range`, or None to fetch the whole object.

    Forms S3 ignores (absent, unparsable, multi-range) fetch everything; the final decision, including 416,
    is made once the size is known. `plaintext_possible` (a bucket opted in to plaintext reads, where the object
    may be stored as plaintext): the range also covers the client's bytes as they are, so either kind of object
    is served from this one response, and a range a plaintext object satisfies is never a 416 upstream.
    """
    widened = _widened(range_value)
    if not plaintext_possible or widened is None:
        return widened
    first, last = _RANGE.match(range_value or "").groups()  # type: ignore[union-attr]  # widened: it matched
    if first == "":
        return widened  # the last ceil(n/S) + 1 sealed segments hold more than n bytes
    start = min(_int(first), _int(widened[len("bytes="):].partition("-")[0]))
    if last == "":
        return f"bytes={start}-"
    end = max(_int(last), _int(widened.rpartition("-")[2]))
    return f"bytes={start}-{end}"


def _widened(range_value: str | None) -> str | None:
    match = _RANGE.match(range_value or "")
    if match is None:
        return None
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":
        # Suffix `-n`: the last n plaintext bytes lie in at most ceil(n/S) + 1 segments, whatever the size
        # (the final segment may be short). `-0` is unsatisfiable; one segment suffices to learn the size.
        segments = -(-_int(last) // SEGMENT_SIZE_BYTES) + 1
        return f"bytes=-{segments * SEALED_SEGMENT_SIZE_BYTES}"
    start = _int(first) // SEGMENT_SIZE_BYTES * SEALED_SEGMENT_SIZE_BYTES
    if last == "":
        return f"bytes={start}-"
    if _int(last) < _int(first):
        return None  # invalid: S3 ignores the header and returns the whole object
    end = (_int(last) // SEGMENT_SIZE_BYTES + 1) * SEALED_SEGMENT_SIZE_BYTES - 1
    return f"bytes={start}-{end}"


def parse_content_range(value: str) -> tuple[int, int, int]:
    """(first, last, total) of an upstream `Content-Range: bytes a-b/total`; ValueError if malformed."""
    match = _CONTENT_RANGE.match(value.strip())
    if match is None:
        raise ValueError("malformed Content-Range")
    first, last, total = (int(g) for g in match.groups())
    return first, last, total
