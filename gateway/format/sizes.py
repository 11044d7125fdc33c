"""Size arithmetic of format v1: plaintext ↔ ciphertext sizes and the segments that cover a plaintext range.

Pure integer arithmetic, no I/O, no keys. The stored body is nothing but sealed segments (no header, no trailer),
so every size is a function of the plaintext size alone and the plaintext size a function of the stored size
alone: listings show plaintext sizes without a request per key, and a ranged GET maps onto one contiguous window
of stored bytes. See docs/FORMAT.md, "Sizes" and "Reading a range".
"""
from __future__ import annotations

from dataclasses import dataclass

# Fixed for format v1 (deployment-wide): a listing must compute plaintext sizes from stored sizes with no
# per-key request, so the segment size cannot vary per object. It is still recorded in the header (log2) and
# bound into the key derivation, so a later version may choose another.
SEGMENT_SIZE_LOG2 = 16
SEGMENT_SIZE_BYTES = 1 << SEGMENT_SIZE_LOG2  # S = 65,536 plaintext bytes per full segment
TAG_SIZE_BYTES = 16  # AES-GCM tag appended to every segment
SEALED_SEGMENT_SIZE_BYTES = SEGMENT_SIZE_BYTES + TAG_SIZE_BYTES  # 65,552 stored bytes per full segment

# The segment index is a 56-bit field of the nonce: no object may have more segments than this.
MAX_SEGMENTS = 1 << 56


def segment_count(plaintext_size: int) -> int:
    """k = max(1, ceil(n / S)). An empty object is one empty final segment, so even emptiness is authenticated."""
    if plaintext_size < 0:
        raise ValueError("plaintext size must not be negative")
    return max(1, -(-plaintext_size // SEGMENT_SIZE_BYTES))


def ciphertext_size(plaintext_size: int) -> int:
    """Stored size of an object of `plaintext_size` bytes: n + 16·k."""
    return plaintext_size + TAG_SIZE_BYTES * segment_count(plaintext_size)


def plaintext_size(ciphertext_size: int) -> int:
    """Plaintext size of a stored object of `ciphertext_size` bytes; ValueError if no plaintext has that size.

    k = ceil(c / (S+16)), n = c − 16k. The last sealed segment, c − (k−1)(S+16) bytes, must hold at least the tag,
    and more than the tag unless it is the only segment: only an empty *object* has an empty segment. Sizes that
    fail this cannot have been written by any writer, so a reader treats them as tampering.
    """
    if ciphertext_size < TAG_SIZE_BYTES:
        raise ValueError("stored size is smaller than one tag")
    count = -(-ciphertext_size // SEALED_SEGMENT_SIZE_BYTES)
    last_sealed = ciphertext_size - (count - 1) * SEALED_SEGMENT_SIZE_BYTES
    if last_sealed < TAG_SIZE_BYTES or (count > 1 and last_sealed == TAG_SIZE_BYTES):
        raise ValueError("stored size is impossible for format v1 (final segment shorter than allowed)")
    return ciphertext_size - TAG_SIZE_BYTES * count


def largest_plaintext_within(stored_limit: int) -> int:
    """The largest plaintext size whose stored size is at most `stored_limit` (e.g. S3's 5 GiB per PUT)."""
    full, partial = divmod(stored_limit, SEALED_SEGMENT_SIZE_BYTES)
    return full * SEGMENT_SIZE_BYTES + max(0, min(partial, SEALED_SEGMENT_SIZE_BYTES) - TAG_SIZE_BYTES)


@dataclass(frozen=True)
class SegmentSpan:
    """The stored bytes and segments that cover a plaintext range, and how to cut the range out of them."""
    first_segment: int  # index of the first segment to open
    last_segment: int  # index of the last segment to open (inclusive)
    ciphertext_start: int  # first stored byte to fetch (inclusive) — for an upstream `Range: bytes=a-b`
    ciphertext_end: int  # last stored byte to fetch (inclusive)
    skip_bytes: int  # plaintext bytes to drop from the start of the first opened segment
    length: int  # plaintext bytes to return after skipping
    final_segment: int  # index of the object's final segment: only it is opened with the final flag


def covering_segments(start: int, end: int, plaintext_size: int) -> SegmentSpan:
    """The segments covering plaintext bytes `start..end` (inclusive) of an object of `plaintext_size` bytes.

    The range must already be validated (0 <= start <= end < size). The whole object is `0, size − 1`; for an
    empty object that is `0, −1`, which still covers (and so authenticates) its one empty final segment.
    """
    if plaintext_size < 0:
        raise ValueError("plaintext size must not be negative")
    final = segment_count(plaintext_size) - 1
    if plaintext_size == 0:
        if (start, end) != (0, -1):
            raise ValueError("an empty object has no byte range other than the whole (0, -1)")
        first = last = 0
    else:
        if not 0 <= start <= end < plaintext_size:
            raise ValueError("range outside the object")
        first, last = start // SEGMENT_SIZE_BYTES, end // SEGMENT_SIZE_BYTES
    stored_end = min((last + 1) * SEALED_SEGMENT_SIZE_BYTES, ciphertext_size(plaintext_size)) - 1
    return SegmentSpan(
        first_segment=first,
        last_segment=last,
        ciphertext_start=first * SEALED_SEGMENT_SIZE_BYTES,
        ciphertext_end=stored_end,
        skip_bytes=start - first * SEGMENT_SIZE_BYTES,
        length=end - start + 1,
        final_segment=final,
    )
