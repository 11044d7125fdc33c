"""Size arithmetic of format v1: sizes both ways, impossible stored sizes, and the segments covering a range."""
from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.format.sizes import (
    SEALED_SEGMENT_SIZE_BYTES,
    SEGMENT_SIZE_BYTES,
    TAG_SIZE_BYTES,
    SegmentSpan,
    ciphertext_size,
    covering_segments,
    plaintext_size,
    segment_count,
)

S = SEGMENT_SIZE_BYTES
C = SEALED_SEGMENT_SIZE_BYTES
T = TAG_SIZE_BYTES


def test_constants():
    assert (S, T, C) == (65536, 16, 65552)


@pytest.mark.parametrize("n, k, c", [
    (0, 1, 16), (1, 1, 17), (S - 1, 1, S + 15), (S, 1, C), (S + 1, 2, C + 17), (2 * S, 2, 2 * C),
    (2 * S + 5, 3, 2 * C + 21), (5 * 2**40, 5 * 2**24, 5 * 2**40 + 16 * 5 * 2**24),
])
def test_sizes_table(n, k, c):
    assert segment_count(n) == k
    assert ciphertext_size(n) == c
    assert plaintext_size(c) == n


def test_negative_plaintext_size_is_a_programming_error():
    with pytest.raises(ValueError):
        segment_count(-1)


@pytest.mark.parametrize("c", [
    -1, 0, 1, 15,  # smaller than one tag
    C + 1, C + 15,  # a final segment shorter than its tag
    C + 16, 2 * C + 16,  # an empty final segment after others: only an empty object has an empty segment
])
def test_impossible_stored_sizes(c):
    with pytest.raises(ValueError):
        plaintext_size(c)


def test_every_small_stored_size_is_accepted_exactly_when_some_plaintext_has_it():
    image = {ciphertext_size(n) for n in range(0, 3 * S + 2)}
    for c in range(0, 3 * C + 18):
        if c in image:
            assert ciphertext_size(plaintext_size(c)) == c
        else:
            with pytest.raises(ValueError):
                plaintext_size(c)


@settings(max_examples=3000)
@given(st.integers(0, 2**52))
def test_plaintext_size_inverts_ciphertext_size(n):
    assert plaintext_size(ciphertext_size(n)) == n


@settings(max_examples=3000)
@given(st.integers(-10, 2**52))
def test_plaintext_size_accepts_only_sizes_a_writer_produces(c):
    try:
        n = plaintext_size(c)
    except ValueError:
        # No plaintext near the only candidate maps to c (ciphertext_size is strictly increasing).
        guess = max(0, c - T * max(1, -(-c // C)))
        assert all(ciphertext_size(m) != c for m in range(max(0, guess - 2), guess + 3))
    else:
        assert ciphertext_size(n) == c


# --- covering_segments against a brute-force reference ----------------------------------------------------------
def reference_span(start: int, end: int, n: int) -> SegmentSpan:
    """Lay the object out segment by segment and collect the ones that hold any byte of start..end.

    Only segments near the range are laid out (so huge objects stay cheap); the neighbourhood is wider than any
    segment that could overlap, so the brute force still decides which ones do.
    """
    k = segment_count(n)
    layout = []
    for i in range(max(0, start // S - 2), min(k, max(end, 0) // S + 3)):
        p0, p1 = i * S, min((i + 1) * S, n)
        c0 = i * C
        layout.append((i, p0, p1, c0, c0 + (p1 - p0) + T))
    if n == 0:
        covering = layout  # the one empty segment, which is read so that emptiness is authenticated
    else:
        covering = [seg for seg in layout if seg[1] <= end and start < seg[2]]
    first, last = covering[0], covering[-1]
    return SegmentSpan(first_segment=first[0], last_segment=last[0], ciphertext_start=first[3],
                       ciphertext_end=last[4] - 1, skip_bytes=start - first[1], length=end - start + 1,
                       final_segment=k - 1)


BOUNDARY_SIZES = [1, 2, S - 1, S, S + 1, 2 * S - 1, 2 * S, 2 * S + 1, 3 * S + 7, 4 * S]


def _offsets_near_boundaries(n: int) -> list[int]:
    near = set()
    for b in range(0, n + S, S):
        near.update({b - 2, b - 1, b, b + 1, b + 2})
    near.update({0, 1, n - 2, n - 1})
    return sorted(o for o in near if 0 <= o < n)


@pytest.mark.parametrize("n", BOUNDARY_SIZES)
def test_covering_segments_exhaustive_near_boundaries(n):
    offsets = _offsets_near_boundaries(n)
    for start, end in itertools.combinations_with_replacement(offsets, 2):
        assert covering_segments(start, end, n) == reference_span(start, end, n), (start, end, n)


def test_empty_object_is_covered_by_its_one_empty_segment():
    span = covering_segments(0, -1, 0)
    assert span == SegmentSpan(first_segment=0, last_segment=0, ciphertext_start=0, ciphertext_end=T - 1,
                               skip_bytes=0, length=0, final_segment=0)
    assert span == reference_span(0, -1, 0)


@pytest.mark.parametrize("n", [0, *BOUNDARY_SIZES])
def test_whole_object_span_is_the_whole_stored_object(n):
    span = covering_segments(0, n - 1, n)
    assert (span.ciphertext_start, span.ciphertext_end) == (0, ciphertext_size(n) - 1)
    assert (span.first_segment, span.last_segment) == (0, segment_count(n) - 1) == (0, span.final_segment)
    assert (span.skip_bytes, span.length) == (0, n)


@pytest.mark.parametrize("start, end, n", [
    (0, 0, 0), (1, 0, 0), (0, -1, 5), (-1, 2, 5), (3, 2, 5), (0, 5, 5), (5, 5, 5), (0, 0, -1),
])
def test_invalid_ranges_are_programming_errors(start, end, n):
    with pytest.raises(ValueError):
        covering_segments(start, end, n)


@settings(max_examples=3000, deadline=None)
@given(st.data(), st.one_of(st.integers(1, 6 * S), st.integers(1, 2**44)))
def test_covering_segments_matches_reference(data, n):
    near = [o for o in _offsets_near_boundaries(min(n, 3 * S))] + [o for o in (n - S - 1, n - S, n - 2) if o >= 0]
    start = data.draw(st.one_of(st.integers(0, n - 1), st.sampled_from(near)))
    # Ranges of up to ~5 segments (the reference lays out every segment in the range), ending anywhere,
    # including at the object's last byte.
    end = data.draw(st.one_of(st.integers(start, min(n - 1, start + 5 * S)), st.just(min(n - 1, start + 5 * S))))
    assert covering_segments(start, end, n) == reference_span(start, end, n)
