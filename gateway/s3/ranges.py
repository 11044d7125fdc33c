"""The client's Range header, in plaintext offsets, settled the way S3 settles it. Pure.

S3 serves a single byte range (RFC 9110 section 14). Whatever it cannot read as exactly one valid range
(another unit, bad syntax, last < first, several ranges) it ignores and answers 200 with the whole object;
a valid range that selects nothing is 416 InvalidRange.
"""
from __future__ import annotations

from gateway import errors
from gateway.numerals import decimal


def parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """Inclusive (first, last) plaintext offsets to serve, or None for the whole object (200)."""
    if value is None:
        return None
    unit, sep, spec = value.strip().partition("=")
    if not sep or unit.lower() != "bytes":  # range units are case-insensitive (RFC 9110 section 14.1)
        return None
    # RFC 9110's list rule lets empty elements appear ("bytes=0-1,"); they do not make a second range.
    specs = [s.strip() for s in spec.split(",") if s.strip()]
    if len(specs) != 1:
        return None
    first_text, dash, last_text = specs[0].partition("-")
    if not dash:
        return None

    # decimal() reads a numeral of any length, capped: a huge last byte is the end of the object, a huge first
    # byte lies past it (416). isdigit()+int() would take "١" and "+1", and raise past 4,300 digits.
    if not first_text:
        # Suffix range "-n": the last n bytes; more than the object is the whole object.
        suffix = decimal(last_text)
        if suffix is None:
            return None
        if suffix == 0 or size == 0:
            raise _unsatisfiable(value, size)
        return max(0, size - suffix), size - 1

    first = decimal(first_text)
    if first is None:
        return None
    if last_text:
        last = decimal(last_text)
        if last is None or last < first:
            return None  # syntactically invalid: ignored, not 416 (AWS answers 200 for "bytes=3-0")
    else:
        last = size - 1
    if first >= size:
        raise _unsatisfiable(value, size)
    return first, min(last, size - 1)


def _unsatisfiable(value: str, size: int) -> errors.InvalidRange:
    return errors.InvalidRange(ActualObjectSize=str(size), RangeRequested=value)


def content_range(start: int, end: int, size: int) -> str:
    return f"bytes {start}-{end}/{size}"
