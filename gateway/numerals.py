"""Decimal numbers in client and store text (headers, query parameters, XML), read safely. Pure, and beside
`errors` the one module of ours that the pure layers (`format`, `s3`) may import.

Why not int(): it accepts "+1", " 1", "1_0" and non-ASCII digits ("١", "²" passes str.isdigit() and then fails
int()), and it refuses numerals over 4,300 digits with a ValueError (CPython's integer-string limit): each of
those reached from client input is a 500 with a traceback. Here a numeral is ASCII digits only, and any length
is read: a value above `cap` comes back as `cap`, so callers compare it with their own bounds and answer as S3
would (a huge range end is the end of the object; a huge part number is out of range).
"""
from __future__ import annotations

# Larger than any size, offset, count or timestamp S3 deals in (int64), so capping never changes an answer.
DEFAULT_CAP = 2**63


def decimal(text: str, cap: int = DEFAULT_CAP) -> int | None:
    """The value of `text` if it is a plain ASCII decimal numeral (at least one digit, nothing else), at most
    `cap`; None otherwise."""
    if not text or not text.isascii() or not text.isdigit():
        return None
    significant = text.lstrip("0")
    if len(significant) > len(str(cap)):
        return cap
    return min(int(significant or "0"), cap)
