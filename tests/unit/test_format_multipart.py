"""Properties of the multipart layout of format v1 (docs/FORMAT.md §15): round trips for any part layout, the
stored size as a function of (plaintext size, stored part count) and back, the padding that makes it so, ranged
reads through the part table, every tamper class detected, and re-uploaded parts getting keys of their own."""
from __future__ import annotations

import dataclasses
import os
import pickle
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import errors
from gateway.format import multipart as mp
from gateway.format.envelope import (
    FLAG_MULTIPART_LAYOUT,
    Header,
    MultipartKeys,
    new_multipart_keys,
    new_object_key,
    open_multipart_keys,
    open_object_key,
)
from gateway.format.segments import open_batch, seal_batch
from gateway.format.sizes import SEALED_SEGMENT_SIZE_BYTES, SEGMENT_SIZE_BYTES, TAG_SIZE_BYTES, ciphertext_size

S = SEGMENT_SIZE_BYTES
C = SEALED_SEGMENT_SIZE_BYTES
T = TAG_SIZE_BYTES

SLOW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FAST = settings(max_examples=300, deadline=None)

# Sizes around segment boundaries. Only the last part may be empty (S3: every other part is >= 5 MiB; the sizes
# here are far smaller, which the format does not care about).
part_sizes = st.one_of(st.sampled_from([1, S - 1, S, S + 1, 2 * S - 1, 2 * S, 2 * S + 1]), st.integers(1, 2 * S + 3))
last_sizes = st.one_of(st.just(0), part_sizes)


@st.composite
def layouts(draw, max_parts: int = 6) -> tuple[list[tuple[int, int]], bool]:
    """([(part number, plaintext size)], trailer in a store part of its own?)."""
    count = draw(st.integers(1, max_parts))
    own_part = draw(st.booleans())
    top = 9_999 if own_part else 10_000  # the trailer part takes the number after the last one
    numbers = draw(st.one_of(st.just(list(range(1, count + 1))),
                             st.lists(st.one_of(st.integers(1, top), st.just(top)), min_size=count, max_size=count,
                                      unique=True).map(sorted)))
    sizes = [draw(part_sizes) for _ in range(count - 1)] + [draw(last_sizes)]
    return list(zip(numbers, sizes)), own_part


@dataclasses.dataclass(frozen=True)
class Stored:
    dek: bytes
    header: Header
    keys: MultipartKeys
    table: mp.PartTable
    plaintext: bytes
    stored: bytes

    @property
    def m(self) -> int:  # what the store's ETag says: "-M"
        return self.table.stored_part_count

    def part_bounds(self, index: int) -> tuple[int, int]:
        start = self.table.part_offsets()[index][1]
        return start, start + self.table.parts[index].stored_size

    @property
    def parts_end(self) -> int:
        return sum(p.stored_size for p in self.table.parts)


def _bytes(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


def build(layout: list[tuple[int, int]], own_part: bool, seed: int = 0, dek: bytes | None = None) -> Stored:
    """A multipart-layout object as the gateway writes it: parts sealed independently (here in a shuffled order,
    as they may arrive), each with a fresh part salt, then the trailer at Complete."""
    dek = dek or os.urandom(32)
    header, keys = new_multipart_keys(dek)
    plaintext = _bytes(seed, sum(size for _, size in layout))
    offsets = [sum(size for _, size in layout[:i]) for i in range(len(layout))]
    sealed: dict[int, tuple[mp.PartEntry, bytes]] = {}
    order = list(range(len(layout)))
    random.Random(seed).shuffle(order)
    for i in order:
        number, size = layout[i]
        salt = os.urandom(32)
        body = seal_batch(keys.part_key(number, salt), 0, plaintext[offsets[i]:offsets[i] + size], final=True,
                          part_number=number)
        sealed[i] = (mp.PartEntry(number, size, salt), bytes(body))
    table = mp.PartTable(tuple(sealed[i][0] for i in range(len(layout))), len(layout) + (1 if own_part else 0))
    stored = b"".join(sealed[i][1] for i in range(len(layout))) + mp.seal_trailer(keys, table)
    return Stored(dek, header, keys, table, plaintext, stored)


def read_table(dek: bytes, header: Header, stored: bytes, m: int) -> tuple[MultipartKeys, mp.PartTable]:
    """Size from (stored size, M of the ETag), commitment, then the table from the last table_tail_size(M) bytes:
    the first requests of every read (docs/FORMAT.md §15.7)."""
    try:
        n = mp.plaintext_size(len(stored), m)
    except ValueError:
        raise errors.TamperedCiphertext("impossible stored size") from None
    keys = open_multipart_keys(dek, header)
    table = mp.open_trailer(keys, stored[-mp.table_tail_size(m):], len(stored), m)
    assert table.plaintext_size == n  # the size check in open_trailer makes it so
    return keys, table


def read_range(keys: MultipartKeys, table: mp.PartTable, stored: bytes, start: int, end: int) -> bytes:
    """One fetch of span.ciphertext_start..ciphertext_end, then each covering part opened with its own key."""
    span = mp.covering_parts(start, end, table)
    window = memoryview(stored)[span.ciphertext_start:span.ciphertext_end + 1]
    out = bytearray()
    for ps in span.parts:
        at = ps.stored_offset + ps.span.ciphertext_start - span.ciphertext_start
        piece = window[at:at + ps.span.ciphertext_end - ps.span.ciphertext_start + 1]
        opened = open_batch(keys.part_key(ps.part.number, ps.part.salt), ps.span.first_segment, piece,
                            ps.span.final_segment, part_number=ps.part.number)
        out += opened[ps.span.skip_bytes:ps.span.skip_bytes + ps.span.length]
    return bytes(out)


def read_whole(dek: bytes, header: Header, stored: bytes | bytearray, m: int) -> bytes:
    stored = bytes(stored)
    keys, table = read_table(dek, header, stored, m)
    parts_end = sum(p.stored_size for p in table.parts)
    mp.check_padding(stored[parts_end:parts_end + mp.padding_size(table)])
    return read_range(keys, table, stored, 0, table.plaintext_size - 1)


# --- round trips ------------------------------------------------------------------------------------------------
@SLOW
@given(layout=layouts(), seed=st.integers(0, 2**32))
def test_round_trip_for_any_layout(layout, seed):
    parts, own_part = layout
    obj = build(parts, own_part, seed)
    n, count = len(obj.plaintext), len(parts)
    assert obj.m == count + (1 if own_part else 0)
    assert len(obj.stored) == mp.stored_size(n, obj.m)
    assert mp.plaintext_size(len(obj.stored), obj.m) == n
    assert read_whole(obj.dek, obj.header, obj.stored, obj.m) == obj.plaintext
    # The store's parts: one per client part, the trailer appended to the last or a part of its own.
    sizes = obj.table.stored_part_sizes()
    assert len(sizes) == obj.m and sum(sizes) == len(obj.stored)
    assert sizes[:count - 1] == [ciphertext_size(size) for _, size in parts[:-1]]
    trailer = mp.trailer_size(obj.table)
    assert sizes[count - 1:] == ([ciphertext_size(parts[-1][1]) + trailer] if not own_part
                                 else [ciphertext_size(parts[-1][1]), trailer])
    # The trailer: zero padding, then exactly table_tail_size(N) bytes; the N-byte tail alone opens the table too.
    padding = mp.padding_size(obj.table)
    assert padding >= (60 if own_part else 0)
    assert obj.stored[obj.parts_end:obj.parts_end + padding] == bytes(padding)
    assert trailer == padding + mp.table_tail_size(count)
    assert mp.open_trailer(obj.keys, obj.stored[-mp.table_tail_size(count):], len(obj.stored)) == obj.table
    assert mp.tail_part_count(obj.stored) == count


@SLOW
@given(layout=layouts(), seed=st.integers(0, 2**32), data=st.data())
def test_every_range_decrypts_to_the_right_bytes(layout, seed, data):
    parts, own_part = layout
    obj = build(parts, own_part, seed)
    n = len(obj.plaintext)
    if n == 0:
        assert read_range(obj.keys, obj.table, obj.stored, 0, -1) == b""
        return
    start = data.draw(st.integers(0, n - 1))
    end = data.draw(st.integers(start, n - 1))
    keys, table = read_table(obj.dek, obj.header, obj.stored, obj.m)
    assert read_range(keys, table, obj.stored, start, end) == obj.plaintext[start:end + 1]
    span = mp.covering_parts(start, end, table)
    # The fetch never reaches the trailer, and holds at most the covering segments of the covering parts.
    assert 0 <= span.ciphertext_start <= span.ciphertext_end < obj.parts_end
    assert span.ciphertext_end - span.ciphertext_start + 1 <= (end - start + 1) + 2 * C + T * (
        (end - start) // S + 2 * len(span.parts))
    # Empty parts are skipped by a range; only a whole read opens them.
    assert all(ps.part.size > 0 for ps in span.parts) or (start, end) == (0, n - 1)


def test_whole_read_opens_every_part_even_empty_ones():
    obj = build([(1, S), (2, 0)], own_part=False)
    span = mp.covering_parts(0, S - 1, obj.table)
    assert [ps.part.number for ps in span.parts] == [1, 2] and span.ciphertext_end == S + 2 * T - 1
    empty = build([(7, 0)], own_part=True)
    assert [ps.part.number for ps in mp.covering_parts(0, -1, empty.table).parts] == [7]
    assert read_whole(empty.dek, empty.header, empty.stored, 2) == b""
    with pytest.raises(ValueError):
        mp.covering_parts(0, S, obj.table)
    with pytest.raises(ValueError):
        mp.covering_parts(5, 4, obj.table)
    with pytest.raises(ValueError):
        mp.covering_parts(0, 0, empty.table)


@SLOW
@given(layout=layouts())
def test_part_range(layout):
    parts, own_part = layout
    obj = build(parts, own_part)
    at = 0
    for number, size in parts:
        assert mp.part_range(obj.table, number) == (at, at + size - 1)
        if size:
            assert read_range(obj.keys, obj.table, obj.stored, at, at + size - 1) == obj.plaintext[at:at + size]
        at += size
    numbers = {number for number, _ in parts}
    for absent in {0, 10_001} | ({1, 5000, 10_000} - numbers):
        assert mp.part_range(obj.table, absent) is None


# --- sizes ------------------------------------------------------------------------------------------------------
big_sizes = st.one_of(st.integers(0, 4 * S), st.integers(0, 5 * 2**40),
                      st.sampled_from([0, 1, S - 1, S, S + 1, 5 * 2**20, 5 * 2**40]))
stored_counts = st.one_of(st.integers(1, 10_000), st.sampled_from([1, 2, 9_999, 10_000]))


@FAST
@given(n=big_sizes, m=stored_counts)
def test_stored_size_and_plaintext_size_are_inverse_and_monotonic(n, m):
    c = mp.stored_size(n, m)
    assert c == n + 16 * (n // S) + 60 * m + 64
    assert mp.plaintext_size(c, m) == n
    assert mp.stored_size(n + 1, m) > c
    if m < 10_000:
        assert mp.stored_size(n, m + 1) == c + 60
    else:
        with pytest.raises(ValueError):  # S3 holds at most 10,000 parts
            mp.stored_size(n, m + 1)


@FAST
@given(c=st.one_of(st.integers(0, 4 * C), st.integers(0, 2**45)), m=stored_counts)
def test_plaintext_size_rejects_exactly_the_impossible_sizes(c, m):
    rest = c - 60 * m - 64
    try:
        n = mp.plaintext_size(c, m)
    except ValueError:
        # No plaintext size maps onto c: it falls strictly between two consecutive stored sizes.
        assert rest < 0 or rest % C >= S
        if rest >= 0:
            below = rest // C * S + S - 1
            assert mp.stored_size(below, m) < c < mp.stored_size(below + 1, m)
        else:
            assert c < mp.stored_size(0, m)
    else:
        assert mp.stored_size(n, m) == c


def test_size_examples():
    assert mp.stored_size(0, 1) == 124  # one empty part, the trailer appended: tag + 108-byte table tail
    assert mp.stored_size(1, 2) == 185
    assert mp.stored_size(S - 1, 1) == S - 1 + 124
    assert mp.stored_size(S, 1) == S + 16 + 124
    for c in range(S + 124, S + 124 + 16):  # a partial "segment" of S..S+15 bytes: impossible
        with pytest.raises(ValueError):
            mp.plaintext_size(c, 1)
    assert mp.plaintext_size(S + 124 + 16, 1) == S
    for c in (0, 123):
        with pytest.raises(ValueError):
            mp.plaintext_size(c, 1)
    for bad in ((0, 0), (0, 10_002), (-1, 1)):
        with pytest.raises(ValueError):
            mp.stored_size(*bad)
    for m in (0, 10_002):
        with pytest.raises(ValueError):
            mp.plaintext_size(10**6, m)


def _table(sizes: list[int], own_part: bool) -> mp.PartTable:
    salt = bytes(32)
    return mp.PartTable(tuple(mp.PartEntry(i + 1, size, salt) for i, size in enumerate(sizes)),
                        len(sizes) + (1 if own_part else 0))


@FAST
@given(sizes=st.lists(st.one_of(st.sampled_from([0, 1, S - 1, S, S + 1, 2 * S]), st.integers(0, 10 * S),
                                st.integers(0, 2**33)), min_size=1, max_size=300),
       own_part=st.booleans())
def test_padding_is_never_negative_and_exactly_fills_the_gap(sizes, own_part):
    table = _table(sizes, own_part)
    n, count = sum(sizes), len(sizes)
    padding = mp.padding_size(table)
    tags = sum(max(1, -(-size // S)) for size in sizes)
    assert padding == 16 * (n // S + count - tags) + 60 * (table.stored_part_count - count)
    assert padding >= (60 if own_part else 0)
    assert sum(ciphertext_size(s) for s in sizes) + mp.trailer_size(table) == mp.stored_size(n, table.stored_part_count)
    assert sum(table.stored_part_sizes()) == mp.stored_size(n, table.stored_part_count)


def test_padding_bound_is_tight_and_holds_at_10000_parts():
    # Every part one byte over whole segments, remainders summing below S: all the slack is used.
    assert mp.padding_size(_table([1] * 10_000, own_part=False)) == 0
    assert mp.padding_size(_table([S + 1] * 10_000, own_part=False)) == 16 * (10_000 * (S + 1) // S - 20_000
                                                                               + 10_000)
    assert mp.padding_size(_table([0] * 10_000, own_part=False)) == 0
    assert mp.padding_size(_table([S] * 9_999, own_part=True)) == 16 * 9_999 + 60
    assert mp.table_tail_size(10_000) == 440_064


# --- tampering --------------------------------------------------------------------------------------------------
def _tampered(obj: Stored, stored: bytes | bytearray, m: int | None = None) -> None:
    with pytest.raises(errors.TamperedCiphertext):
        read_whole(obj.dek, obj.header, stored, obj.m if m is None else m)


@SLOW
@given(layout=layouts(), seed=st.integers(0, 2**32), data=st.data())
def test_any_flipped_byte_is_detected(layout, seed, data):
    parts, own_part = layout
    obj = build(parts, own_part, seed)
    c, padding = len(obj.stored), mp.padding_size(obj.table)
    tail = mp.table_tail_size(len(parts))
    regions = {"part": (0, obj.parts_end), "padding": (obj.parts_end, obj.parts_end + padding),
               "table": (c - tail, c - 4), "count": (c - 4, c), "anywhere": (0, c)}
    lo, hi = regions[data.draw(st.sampled_from(sorted(regions)))]
    if lo == hi:
        lo, hi = 0, c
    at = data.draw(st.integers(lo, hi - 1))
    tampered = bytearray(obj.stored)
    tampered[at] ^= 1 << data.draw(st.integers(0, 7))
    _tampered(obj, tampered)


@SLOW
@given(layout=layouts(), seed=st.integers(0, 2**32), data=st.data())
def test_any_truncation_or_extension_is_detected(layout, seed, data):
    parts, own_part = layout
    obj = build(parts, own_part, seed)
    _tampered(obj, obj.stored[:data.draw(st.integers(0, len(obj.stored) - 1))])
    extra = data.draw(st.one_of(st.sampled_from([1, 16, 44, 60, C]), st.integers(1, 2 * C)))
    _tampered(obj, obj.stored + bytes(extra))
    _tampered(obj, obj.stored + obj.stored[-extra:])


@SLOW
@given(layout=layouts(), seed=st.integers(0, 2**32), data=st.data())
def test_swapped_parts_are_detected(layout, seed, data):
    parts, own_part = layout
    if len(parts) < 2:
        parts = [(1, S + 1), (max(2, parts[0][0]), parts[0][1])]
    obj = build(parts, own_part, seed)
    i = data.draw(st.integers(0, len(parts) - 2))
    j = data.draw(st.integers(i + 1, len(parts) - 1))
    (a0, a1), (b0, b1) = obj.part_bounds(i), obj.part_bounds(j)
    s = obj.stored
    _tampered(obj, s[:a0] + s[b0:b1] + s[a1:b0] + s[a0:a1] + s[b1:])


@pytest.mark.parametrize("sizes", [[S, S], [2 * S + 3, 2 * S + 3, 0], [1, 1, 1]])
def test_swapped_parts_of_equal_size_are_detected(sizes):
    obj = build([(i + 1, s) for i, s in enumerate(sizes)], own_part=False)
    (a0, a1), (b0, b1) = obj.part_bounds(0), obj.part_bounds(1)
    s = obj.stored
    _tampered(obj, s[:a0] + s[b0:b1] + s[a1:b0] + s[a0:a1] + s[b1:])


@SLOW
@given(layout=layouts(), seed=st.integers(0, 2**32), data=st.data())
def test_a_part_truncated_by_a_segment_is_detected(layout, seed, data):
    parts, own_part = layout
    parts = [(n, s) for n, s in parts]
    index = data.draw(st.integers(0, len(parts) - 1))
    parts[index] = (parts[index][0], max(parts[index][1], S + 1))  # at least two segments
    obj = build(parts, own_part, seed)
    start, end = obj.part_bounds(index)
    cut = start + (end - start - 1) // C * C  # the part's final segment
    s = obj.stored
    _tampered(obj, s[:cut] + s[end:])
    # Also with the stored size kept: zeros inserted into the padding, before the table tail.
    shorter = s[:cut] + s[end:]
    tail_at = len(shorter) - mp.table_tail_size(len(parts))
    _tampered(obj, shorter[:tail_at] + bytes(end - cut) + shorter[tail_at:])


@SLOW
@given(layout=layouts(), seed=st.integers(0, 2**32), data=st.data())
def test_a_dropped_part_is_detected(layout, seed, data):
    parts, own_part = layout
    if len(parts) < 2:
        parts = [(1, S + 1), (max(2, parts[0][0]), parts[0][1])]
    obj = build(parts, own_part, seed)
    start, end = obj.part_bounds(data.draw(st.integers(0, len(parts) - 1)))
    s = obj.stored
    _tampered(obj, s[:start] + s[end:])
    shorter = s[:start] + s[end:]
    tail_at = len(shorter) - mp.table_tail_size(len(parts))
    _tampered(obj, shorter[:tail_at] + bytes(end - start) + shorter[tail_at:])


def test_padding_must_be_zero():
    obj = build([(1, 5)], own_part=True)
    assert mp.padding_size(obj.table) == 60 + 0
    for at in (obj.parts_end, obj.parts_end + 59):
        tampered = bytearray(obj.stored)
        tampered[at] = 0x80
        with pytest.raises(errors.TamperedCiphertext, match="padding"):
            read_whole(obj.dek, obj.header, tampered, obj.m)
        # A ranged read does not fetch the padding: its bytes are still the genuine ones.
        keys, table = read_table(obj.dek, obj.header, bytes(tampered), obj.m)
        assert read_range(keys, table, bytes(tampered), 0, 4) == obj.plaintext
    mp.check_padding(b"")
    mp.check_padding(memoryview(bytes(60)))


def test_a_part_from_another_object_is_detected():
    dek = os.urandom(32)
    layout = [(1, S + 5), (2, 7)]
    one, other = build(layout, False, seed=1, dek=dek), build(layout, False, seed=1, dek=dek)
    assert one.plaintext == other.plaintext and one.stored != other.stored  # new object salt, new part salts
    start, end = one.part_bounds(0)
    _tampered(one, other.stored[start:end] + one.stored[end:])
    _tampered(one, one.stored[:-mp.trailer_size(one.table)] + other.stored[-mp.trailer_size(other.table):])
    # The other object's header: same DEK, so its commitment holds; its keys open neither the table nor the parts.
    with pytest.raises(errors.TamperedCiphertext):
        read_whole(dek, other.header, one.stored, one.m)


def test_a_reuploaded_part_gets_a_new_key_and_the_table_names_the_upload():
    obj = build([(1, S + 9), (2, 300)], own_part=False)
    plaintext = obj.plaintext[S + 9:]
    old = obj.table.parts[1]
    new_salt = os.urandom(32)
    again = seal_batch(obj.keys.part_key(2, new_salt), 0, plaintext, final=True, part_number=2)
    same_salt = seal_batch(obj.keys.part_key(2, old.salt), 0, plaintext, final=True, part_number=2)
    start, end = obj.part_bounds(1)
    assert same_salt == obj.stored[start:end]  # sealing is deterministic under one (number, salt)
    assert again != same_salt and len(again) == len(same_salt)  # same nonces, fresh key: nothing repeats
    # The re-upload in the store, the table naming the first upload: refused.
    _tampered(obj, obj.stored[:start] + again + obj.stored[end:])
    # Completed with the re-upload's record, the object reads (and its trailer is a new one).
    table = mp.PartTable((obj.table.parts[0], mp.PartEntry(2, len(plaintext), new_salt)), 2)
    stored = obj.stored[:start] + bytes(again) + mp.seal_trailer(obj.keys, table)
    assert read_whole(obj.dek, obj.header, stored, 2) == obj.plaintext


def test_a_retried_complete_writes_a_new_table_that_reads_the_same():
    obj = build([(1, 10), (2, 20)], own_part=True)
    first = mp.seal_trailer(obj.keys, obj.table)
    second = mp.seal_trailer(obj.keys, obj.table)
    assert first != second and len(first) == len(second)  # fresh table salt, fresh table key
    for trailer in (first, second):
        stored = obj.stored[:obj.parts_end] + trailer
        assert read_whole(obj.dek, obj.header, stored, obj.m) == obj.plaintext
    fixed = bytes(range(32))
    assert mp.seal_trailer(obj.keys, obj.table, fixed) == mp.seal_trailer(obj.keys, obj.table, fixed)
    # The same parts completed with the trailer appended (M = N): a valid object of 60 bytes less, but only
    # under an ETag that says so.
    other = mp.PartTable(obj.table.parts, 2)
    appended = obj.stored[:obj.parts_end] + mp.seal_trailer(obj.keys, other)
    assert len(appended) == len(obj.stored) - 60
    assert read_whole(obj.dek, obj.header, appended, 2) == obj.plaintext
    _tampered(obj, appended, m=3)
    _tampered(obj, appended[:-mp.table_tail_size(2)] + bytes(60) + appended[-mp.table_tail_size(2):], m=3)


def test_the_etag_part_count_must_match_the_table():
    obj = build([(1, 1)], own_part=True)  # M = 2, 185 bytes
    assert len(obj.stored) == 185
    _tampered(obj, obj.stored, m=1)  # a possible size (61 bytes), but the table says M = 2
    _tampered(obj, obj.stored, m=3)  # an impossible size
    assert read_whole(obj.dek, obj.header, obj.stored, 2) == obj.plaintext


def test_without_an_etag_part_count_the_count_locates_the_table():
    """The fallback for an ETag that lost its `-M` (a copy around the gateway): N from the last four bytes, then
    the table gives M and n, checked against the stored size."""
    obj = build([(1, S + 1), (4, 10)], own_part=True)
    table = mp.open_trailer(obj.keys, obj.stored, len(obj.stored))
    assert table == obj.table and table.stored_part_count == 3
    for tampered in (obj.stored + b"\x00", obj.stored[:-5] + obj.stored[-4:], b"\x00" + obj.stored):
        with pytest.raises(errors.TamperedCiphertext):
            mp.open_trailer(obj.keys, tampered, len(tampered))


def test_open_trailer_edges():
    obj = build([(1, 3), (2, 4)], own_part=False)
    c = len(obj.stored)
    need = mp.table_tail_size(2)
    with pytest.raises(ValueError):
        mp.open_trailer(obj.keys, obj.stored[-need + 1:], c)  # the caller fetched too little
    for count in (0, 10_001, 2**32 - 1):
        with pytest.raises(errors.TamperedCiphertext):
            mp.open_trailer(obj.keys, obj.stored[:-4] + count.to_bytes(4, "big"), c)
    # A count whose table would not fit in the object: tampering, even with the whole object as the tail.
    with pytest.raises(errors.TamperedCiphertext):
        mp.open_trailer(obj.keys, obj.stored[:-4] + (1000).to_bytes(4, "big"), c)
    with pytest.raises(errors.TamperedCiphertext):
        mp.tail_part_count(b"\x00\x01")
    with pytest.raises(errors.TamperedCiphertext, match="size"):
        mp.open_trailer(obj.keys, obj.stored, c + 1)  # the table does not describe an object of this size
    assert mp.open_trailer(obj.keys, memoryview(obj.stored), c) == obj.table
    # The store's part count (the ETag's -M) must be the table's: M = N = 2 here.
    assert mp.open_trailer(obj.keys, obj.stored, c, 2) == obj.table
    for wrong in (1, 3, 4):
        with pytest.raises(errors.TamperedCiphertext, match="part count"):
            mp.open_trailer(obj.keys, obj.stored, c, wrong)


# --- tables, keys and headers -----------------------------------------------------------------------------------
@pytest.mark.parametrize("parts, m", [
    ((), 1),
    (((1, 0), (1, 0)), 2),  # not strictly ascending
    (((2, 0), (1, 0)), 2),
    (((0, 5),), 1),
    (((10_001, 5),), 1),
    (((1, -1),), 1),
    (((1, 5),), 3),  # M must be N or N + 1
    (((1, 5), (2, 5)), 1),
    (tuple((n, 0) for n in range(1, 10_001)), 10_001),  # S3 holds at most 10,000 parts
])
def test_part_table_refuses_malformed_tables(parts, m):
    with pytest.raises(ValueError):
        mp.PartTable(tuple(mp.PartEntry(number, size, bytes(32)) for number, size in parts), m)
    with pytest.raises(ValueError):
        mp.PartTable((mp.PartEntry(1, 5, bytes(31)),), 1)
    with pytest.raises(ValueError):
        mp.PartTable(tuple(mp.PartEntry(i, 0, bytes(32)) for i in range(1, 10_002)), 10_001)


def test_part_and_table_keys_are_all_different():
    dek = os.urandom(32)
    _, keys = new_multipart_keys(dek)
    salt, other_salt = os.urandom(32), os.urandom(32)
    nonce_plaintext = b"the same plaintext"

    def sealed(key) -> bytes:
        return bytes(seal_batch(key, 0, nonce_plaintext, final=True, part_number=1))

    outputs = {sealed(keys.part_key(1, salt)), sealed(keys.part_key(1, other_salt)), sealed(keys.part_key(2, salt)),
               sealed(keys.table_key(salt))}
    assert len(outputs) == 4
    # A second object with the same DEK and the same part salt still has other keys (its own object salt).
    _, keys_again = new_multipart_keys(dek)
    assert sealed(keys_again.part_key(1, salt)) not in outputs
    for bad in ((0, salt), (2**32, salt), (1, salt[:31])):
        with pytest.raises(ValueError):
            keys.part_key(*bad)
    with pytest.raises(ValueError):
        keys.table_key(b"short")


def test_the_multipart_header_is_committed_and_bound():
    dek = os.urandom(32)
    header, _ = new_multipart_keys(dek)
    assert header.flags == FLAG_MULTIPART_LAYOUT and header.encode()[:4] == bytes([1, 1, 16, 1])
    assert Header.decode(header.encode()) == header
    open_multipart_keys(dek, header)
    for wrong in (os.urandom(32), dek[:16]):
        with pytest.raises(errors.TamperedCiphertext, match="commitment"):
            open_multipart_keys(wrong, header)
    with pytest.raises(errors.UnsupportedFormat):
        open_object_key(dek, header)  # no single object key for this layout
    single, _ = new_object_key(dek)
    with pytest.raises(errors.UnsupportedFormat):
        open_multipart_keys(dek, single)
    # The flag edited away (or onto a one-request header): the commitment no longer matches.
    with pytest.raises(errors.TamperedCiphertext, match="commitment"):
        open_object_key(dek, dataclasses.replace(header, flags=0))
    with pytest.raises(errors.TamperedCiphertext, match="commitment"):
        open_multipart_keys(dek, dataclasses.replace(single, flags=FLAG_MULTIPART_LAYOUT))
    with pytest.raises(errors.UnsupportedFormat):
        open_multipart_keys(dek, dataclasses.replace(header, flags=0x03))
    first, _ = new_multipart_keys(dek)
    assert first.salt != header.salt
    fixed = bytes(range(32))
    assert new_multipart_keys(dek, fixed)[0] == new_multipart_keys(dek, fixed)[0]


def test_no_key_material_in_reprs():
    dek = os.urandom(32)
    header, keys = new_multipart_keys(dek)
    assert repr(keys) == "MultipartKeys(<hidden>)" and not hasattr(keys, "__dict__")
    with pytest.raises(TypeError):
        pickle.dumps(keys)
    assert dek.hex() not in repr(header) and dek.hex() not in repr(keys)
    obj = build([(1, 10)], own_part=True, dek=dek)
    tampered = bytearray(obj.stored)
    tampered[-10] ^= 1
    with pytest.raises(errors.TamperedCiphertext) as err:
        read_whole(dek, obj.header, tampered, obj.m)
    text = repr(err.value) + str(err.value)
    assert dek.hex() not in text and obj.plaintext.hex() not in text
