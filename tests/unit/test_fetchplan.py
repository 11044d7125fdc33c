"""The one-request range plan: whatever the object's size, the window fetched covers the segments needed."""
from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway import errors
from gateway.format.fetchplan import parse_content_range, upstream_range
from gateway.format.sizes import SEALED_SEGMENT_SIZE_BYTES, SEGMENT_SIZE_BYTES, ciphertext_size, covering_segments
from gateway.s3.ranges import parse_range

S = SEGMENT_SIZE_BYTES
C = SEALED_SEGMENT_SIZE_BYTES


def _window(fetch: str | None, total: int) -> tuple[int, int] | None:
    """What a store answers for `fetch` on an object of `total` bytes: (first, last), or None for 416."""
    if fetch is None:
        return 0, total - 1
    spec = fetch.split("=", 1)[1]
    first, last = spec.split("-")
    if first == "":
        return max(0, total - int(last)), total - 1
    if int(first) >= total:
        return None
    return int(first), min(total - 1, int(last)) if last else total - 1


def test_plans():
    assert upstream_range(None) is None
    assert upstream_range("bytes=0-0") == f"bytes=0-{C - 1}"
    assert upstream_range(f"bytes={S}-{S}") == f"bytes={C}-{2 * C - 1}"
    assert upstream_range(f"bytes={S - 1}-{S}") == f"bytes=0-{2 * C - 1}"
    assert upstream_range("bytes=100-") == "bytes=0-"
    assert upstream_range(f"bytes={2 * S}-") == f"bytes={2 * C}-"
    assert upstream_range("bytes=-1") == f"bytes=-{2 * C}"
    assert upstream_range("bytes=-0") == f"bytes=-{C}"
    assert upstream_range("bytes=5-2") is None
    assert upstream_range("bytes=0-1,4-5") is None
    assert upstream_range("bytes=-") is None
    assert upstream_range("lines=0-1") is None


def test_parse_content_range():
    assert parse_content_range("bytes 0-9/100") == (0, 9, 100)


def test_huge_and_non_ascii_numerals_are_read_safely():
    """Finding 6: 5,000-digit offsets raised int()'s ValueError (a 500); "١" passed re's \\d."""
    huge = "9" * 5000
    assert upstream_range(f"bytes=0-{huge}") == f"bytes=0-{2**63 // S * C + C - 1}"
    assert upstream_range(f"bytes={huge}-").startswith("bytes=")
    assert upstream_range(f"bytes=-{huge}").startswith("bytes=-")
    assert upstream_range(f"bytes={huge}-{huge}", plaintext_possible=True).startswith("bytes=")
    assert upstream_range("bytes=\u0661-\u0662") is None
    for bad in (f"bytes 0-{huge}/10", "bytes \u0661-\u0662/10"):
        with pytest.raises(ValueError, match="malformed"):
            parse_content_range(bad)


@settings(max_examples=2000)
@given(size=st.integers(0, 6 * S), a=st.integers(0, 7 * S), b=st.integers(0, 7 * S),
       form=st.sampled_from(["ab", "a-", "-n"]))
def test_window_covers_the_segments_for_every_size(size, a, b, form):
    value = {"ab": f"bytes={a}-{b}", "a-": f"bytes={a}-", "-n": f"bytes=-{b}"}[form]
    total = ciphertext_size(size)
    window = _window(upstream_range(value), total)
    try:
        selected = parse_range(value, size)
    except errors.InvalidRange:
        return  # the gateway answers 416 whatever the window was
    if window is None:
        raise AssertionError(f"store said 416 for a satisfiable range {value} of {size}")
    start, end = selected if selected is not None else (0, size - 1)
    span = covering_segments(start, end, size)
    assert window[0] <= span.ciphertext_start and span.ciphertext_end <= window[1]


@settings(max_examples=2000)
@given(size=st.integers(0, 6 * S), a=st.integers(0, 7 * S), b=st.integers(0, 7 * S),
       form=st.sampled_from(["ab", "a-", "-n"]))
@example(size=S + 60, a=S + 1, b=S + 4, form="ab")  # the widened start (S + 16) is past a plaintext's byte S + 1
@example(size=S + 10, a=S + 1, b=0, form="a-")  # ... and past a plaintext object's end: no 416 upstream
def test_window_in_a_migrating_bucket_covers_both_kinds_of_object(size, a, b, form):
    """Where an object may be stored as plaintext, one window serves it as it is, or as ciphertext."""
    value = {"ab": f"bytes={a}-{b}", "a-": f"bytes={a}-", "-n": f"bytes=-{b}"}[form]
    fetch = upstream_range(value, plaintext_possible=True)
    for total, plain_size, span_of in ((size, size, lambda s, e: (s, e)),
                                       (ciphertext_size(size), size, lambda s, e: (
                                           covering_segments(s, e, size).ciphertext_start,
                                           covering_segments(s, e, size).ciphertext_end))):
        window = _window(fetch, total)
        try:
            selected = parse_range(value, plain_size)
        except errors.InvalidRange:
            continue
        if window is None:
            raise AssertionError(f"store said 416 for a satisfiable range {value} of {plain_size}")
        start, end = selected if selected is not None else (0, plain_size - 1)
        if end < start:
            continue  # an empty plaintext object: nothing to fetch
        first, last = span_of(start, end)
        assert window[0] <= first and last <= window[1]
