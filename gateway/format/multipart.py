"""The multipart layout of format v1 (header flags bit 0): parts sealed independently, then a sealed part table.

Pure: no I/O, no KMS. See docs/FORMAT.md §12.

    body        = part_1 ‖ … ‖ part_N ‖ trailer
    part_i      = the segments of part i's plaintext, sealed under part_key(number_i, part_salt_i)
    trailer     = zero padding ‖ table_salt (32) ‖ seal(table_key(table_salt), table, aad = be32(N)) ‖ be32(N)
    table       = be32(M) ‖ be64(n) ‖ N × (be32(number) ‖ be64(plaintext size) ‖ part_salt (32))

M is the number of parts the *store* holds (the `-M` of its ETag): N, when the trailer was appended to the last
part, or N + 1 when it is a part of its own. The padding makes the stored size a function of the plaintext size
n and M alone — stored = n + 16·floor(n / 65536) + 60·M + 64 — so listings show exact plaintext sizes for every
part layout without reading anything.
"""
from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag

from gateway import errors
from gateway.format.envelope import PART_SALT_SIZE_BYTES, MultipartKeys
from gateway.format.sizes import (SEALED_SEGMENT_SIZE_BYTES, SEGMENT_SIZE_BYTES, TAG_SIZE_BYTES, SegmentSpan,
                                  ciphertext_size, covering_segments)

MAX_PARTS = 10_000  # S3's limit on parts per upload (client part numbers 1..10,000)
TABLE_SALT_SIZE_BYTES = 32
_ENTRY = struct.Struct(f">IQ{PART_SALT_SIZE_BYTES}s")  # part number, plaintext size, part salt
_TABLE_HEAD = struct.Struct(">IQ")  # stored part count M, plaintext size n
_COUNT = struct.Struct(">I")  # N, in clear at the very end (and bound as AAD)
ENTRY_SIZE_BYTES = _ENTRY.size  # 44
# Everything in the trailer but the padding and the entries: salt, table head, tag, the clear count.
TRAILER_FIXED_BYTES = TABLE_SALT_SIZE_BYTES + _TABLE_HEAD.size + TAG_SIZE_BYTES + _COUNT.size  # 64
# Per stored part: a tag's worth of rounding slack plus a table entry. 16 + 44 = 60.
PER_PART_BYTES = TAG_SIZE_BYTES + ENTRY_SIZE_BYTES
# The table is sealed once under a key of its own (fresh table salt): its nonce need only be fixed.
_TABLE_NONCE = bytes(11) + b"\x01"


@dataclass(frozen=True)
class PartEntry:
    number: int  # the client's part number, 1..10,000: in the part key and in every segment nonce
    size: int  # plaintext bytes
    salt: bytes  # the part upload's random salt (not secret)

    @property
    def stored_size(self) -> int:
        return ciphertext_size(self.size)


@dataclass(frozen=True)
class PartTable:
    parts: tuple[PartEntry, ...]
    stored_part_count: int  # M: N, or N + 1 when the trailer is a stored part of its own

    def __post_init__(self) -> None:
        count = len(self.parts)
        if not 1 <= count <= MAX_PARTS:
            raise ValueError("a multipart object has 1..10,000 parts")
        if self.stored_part_count not in (count, count + 1) or self.stored_part_count > MAX_PARTS:
            raise ValueError("the stored part count must be N or N + 1, and at most 10,000")
        numbers = [p.number for p in self.parts]
        if any(not 1 <= n <= MAX_PARTS for n in numbers) or any(a >= b for a, b in zip(numbers, numbers[1:])):
            raise ValueError("part numbers must be strictly ascending in 1..10,000")
        if any(p.size < 0 or len(p.salt) != PART_SALT_SIZE_BYTES for p in self.parts):
            raise ValueError("malformed part entry")

    @property
    def plaintext_size(self) -> int:
        return sum(p.size for p in self.parts)

    def part_offsets(self) -> list[tuple[int, int]]:
        """(plaintext offset, stored offset) of each part's first byte."""
        out, plain, stored = [], 0, 0
        for part in self.parts:
            out.append((plain, stored))
            plain, stored = plain + part.size, stored + part.stored_size
        return out

    def stored_part_sizes(self) -> list[int]:
        """The sizes of the parts as the store holds them (the trailer included), for a copy part by part that
        keeps the store's multipart ETag: same bytes at the same boundaries give the same ETag."""
        sizes = [p.stored_size for p in self.parts]
        trailer = trailer_size(self)
        if self.stored_part_count == len(self.parts):
            sizes[-1] += trailer
        else:
            sizes.append(trailer)
        return sizes


def store_part_ranges(part_sizes: list[int]) -> list[tuple[int, int]]:
    """The stored byte ranges (first, last, inclusive) of consecutive store parts of these sizes, in order: the
    `x-amz-copy-source-range`s of a copy part by part that keeps the store's part boundaries, hence its ETag."""
    if any(size <= 0 for size in part_sizes):
        raise ValueError("a store part holds at least one byte")
    ranges, start = [], 0
    for size in part_sizes:
        ranges.append((start, start + size - 1))
        start += size
    return ranges


# --- sizes ----------------------------------------------------------------------------------------
def stored_size(plaintext_size: int, stored_part_count: int) -> int:
    """The stored size of a multipart-layout object: n + 16·floor(n / S) + 60·M + 64."""
    if plaintext_size < 0 or not 1 <= stored_part_count <= MAX_PARTS:
        raise ValueError("plaintext size must not be negative, and 1 <= M <= 10,000")
    return (plaintext_size + TAG_SIZE_BYTES * (plaintext_size // SEGMENT_SIZE_BYTES)
            + PER_PART_BYTES * stored_part_count + TRAILER_FIXED_BYTES)


def plaintext_size(stored: int, stored_part_count: int) -> int:
    """Inverse of stored_size; ValueError for a stored size no writer produces."""
    if not 1 <= stored_part_count <= MAX_PARTS:
        raise ValueError("stored part count out of range")
    rest = stored - PER_PART_BYTES * stored_part_count - TRAILER_FIXED_BYTES
    if rest < 0:
        raise ValueError("stored size too small for a multipart-layout object")
    full, partial = divmod(rest, SEALED_SEGMENT_SIZE_BYTES)
    if partial >= SEGMENT_SIZE_BYTES:
        raise ValueError("stored size is impossible for the multipart layout")
    return full * SEGMENT_SIZE_BYTES + partial


def max_trailer_size(part_count: int) -> int:
    """The largest trailer N parts can need: the sealed table plus the most padding (T per part, + 60)."""
    return table_tail_size(part_count) + TAG_SIZE_BYTES * part_count + PER_PART_BYTES


def padding_size(table: PartTable) -> int:
    """Zero bytes before the table salt, so that the stored size meets stored_size(n, M).

    Never negative: each part holds max(1, ceil(p / S)) <= floor(p / S) + 1 segments, so all N parts together
    hold at most floor(n / S) + N tags; the slack is T per part not needed, plus 60 when M = N + 1.
    """
    natural = sum(p.stored_size for p in table.parts) + TRAILER_FIXED_BYTES + ENTRY_SIZE_BYTES * len(table.parts)
    return stored_size(table.plaintext_size, table.stored_part_count) - natural


def trailer_size(table: PartTable) -> int:
    return padding_size(table) + TRAILER_FIXED_BYTES + ENTRY_SIZE_BYTES * len(table.parts)


def table_tail_size(part_count: int) -> int:
    """Bytes at the end of the object that hold the sealed table of `part_count` parts (no padding)."""
    return TRAILER_FIXED_BYTES + ENTRY_SIZE_BYTES * part_count


# --- the trailer ----------------------------------------------------------------------------------
def seal_trailer(keys: MultipartKeys, table: PartTable, table_salt: bytes | None = None) -> bytes:
    """The trailer's stored bytes: padding ‖ table salt ‖ sealed table ‖ be32(N)."""
    salt = secrets.token_bytes(TABLE_SALT_SIZE_BYTES) if table_salt is None else table_salt
    count = _COUNT.pack(len(table.parts))
    plain = _TABLE_HEAD.pack(table.stored_part_count, table.plaintext_size) + b"".join(
        _ENTRY.pack(p.number, p.size, p.salt) for p in table.parts)
    # The count is in clear so a reader knows how much to fetch; as AAD it cannot be changed unnoticed.
    sealed = keys.table_key(salt)._aead.encrypt(_TABLE_NONCE, plain, count)
    return bytes(padding_size(table)) + salt + sealed + count


def tail_part_count(tail: bytes) -> int:
    """N, from the last 4 bytes of a multipart-layout object (unauthenticated until open_trailer)."""
    if len(tail) < _COUNT.size:
        raise errors.TamperedCiphertext("The stored object is too short for a part table.")
    count: int = _COUNT.unpack(tail[-_COUNT.size:])[0]
    if not 1 <= count <= MAX_PARTS:
        raise errors.TamperedCiphertext("The stored object's part table has an impossible part count.")
    return count


def open_trailer(keys: MultipartKeys, tail: bytes, stored_total: int,
                 stored_part_count: int | None = None) -> PartTable:
    """The part table from the last bytes of the object (at least table_tail_size(N) of them), checked against
    the object's stored size and, when the store's ETag gives one, its part count M (listings and HEAD take the
    size from that M, so a table that disagrees must not be read). Any inconsistency is TamperedCiphertext."""
    count = tail_part_count(tail)
    if stored_part_count is not None and count not in (stored_part_count - 1, stored_part_count):
        raise errors.TamperedCiphertext("The stored object's part count does not match its part table.")
    need = table_tail_size(count)
    if need > stored_total:
        # The clear count is not authenticated yet: one that needs more bytes than the object has is tampering,
        # not a caller's short fetch.
        raise errors.TamperedCiphertext("The stored object is too short for its part table.")
    if len(tail) < need:
        raise ValueError("tail too short: fetch table_tail_size(N) bytes")
    block = tail[len(tail) - need:]
    salt = block[:TABLE_SALT_SIZE_BYTES]
    sealed = block[TABLE_SALT_SIZE_BYTES:-_COUNT.size]
    try:
        plain = keys.table_key(salt)._aead.decrypt(_TABLE_NONCE, sealed, _COUNT.pack(count))
    except InvalidTag:
        raise errors.TamperedCiphertext("The stored object's part table failed authentication.") from None
    stored_parts, size = _TABLE_HEAD.unpack_from(plain)
    entries = tuple(PartEntry(*_ENTRY.unpack_from(plain, _TABLE_HEAD.size + i * ENTRY_SIZE_BYTES))
                    for i in range(count))
    try:
        table = PartTable(entries, stored_parts)
    except ValueError:
        raise errors.TamperedCiphertext("The stored object's part table is malformed.") from None
    if table.plaintext_size != size or stored_size(size, stored_parts) != stored_total:
        raise errors.TamperedCiphertext("The stored object's size does not match its part table.")
    if stored_part_count is not None and stored_parts != stored_part_count:
        raise errors.TamperedCiphertext("The stored object's part count does not match its part table.")
    return table


def check_padding(padding: bytes | bytearray | memoryview) -> None:
    if any(padding):
        raise errors.TamperedCiphertext("The stored object's trailer padding is not zero.")


# --- ranges ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PartSpan:
    """The segments of one part that cover part of a plaintext range; offsets are in the whole object."""
    part: PartEntry
    span: SegmentSpan  # within the part (its offsets relative to the part's first stored byte)
    stored_offset: int  # where the part starts in the object


@dataclass(frozen=True)
class MultipartSpan:
    parts: tuple[PartSpan, ...]
    ciphertext_start: int  # first stored byte to fetch (inclusive)
    ciphertext_end: int  # last stored byte to fetch (inclusive)


def covering_parts(start: int, end: int, table: PartTable) -> MultipartSpan:
    """The parts and segments covering plaintext bytes start..end (inclusive; validated: 0 <= start <= end < n,
    or 0, -1 for the whole of an empty object). Empty parts inside the range are included: a whole-object read
    must open every part, so that removing one is noticed."""
    size = table.plaintext_size
    whole = (start, end) == (0, size - 1)
    if not whole and not 0 <= start <= end < size:
        raise ValueError("range outside the object")
    spans = []
    for part, (plain_at, stored_at) in zip(table.parts, table.part_offsets()):
        part_end = plain_at + part.size - 1
        if part.size == 0:
            if whole:
                spans.append(PartSpan(part, covering_segments(0, -1, 0), stored_at))
            continue
        if part_end < start or plain_at > end:
            continue
        local = covering_segments(max(start, plain_at) - plain_at, min(end, part_end) - plain_at, part.size)
        spans.append(PartSpan(part, local, stored_at))
    return MultipartSpan(tuple(spans), spans[0].stored_offset + spans[0].span.ciphertext_start,
                         spans[-1].stored_offset + spans[-1].span.ciphertext_end)


def part_range(table: PartTable, part_number: int) -> tuple[int, int] | None:
    """Plaintext (start, end) inclusive of the part with this number, for GET ?partNumber=; None if absent."""
    for part, (plain_at, _) in zip(table.parts, table.part_offsets()):
        if part.number == part_number:
            return plain_at, plain_at + part.size - 1
    return None
