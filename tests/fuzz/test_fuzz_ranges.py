"""Range header parsing (gateway.s3.ranges): any header value and size gives a range inside the object, None
(whole object), or InvalidRange — never another exception."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway import errors
from gateway.s3.ranges import parse_range

_SPEC_PIECES = st.sampled_from(["bytes", "BYTES", "=", "-", ",", " ", "0", "1", "9" * 30, "x", "\u0661", "+", "_"])
_RANGE_LIKE = st.lists(_SPEC_PIECES, max_size=12).map("".join)


@given(st.one_of(st.text(), _RANGE_LIKE, st.integers(min_value=0).map(lambda n: f"bytes={n}-")),
       st.integers(min_value=0, max_value=1 << 50))
def test_any_range_header_gives_a_range_none_or_invalid_range(value: str, size: int) -> None:
    try:
        settled = parse_range(value, size)
    except errors.InvalidRange:
        return
    if settled is not None:
        first, last = settled
        assert 0 <= first <= last < size


@given(st.integers(min_value=1, max_value=1 << 50), st.data())
def test_valid_ranges_round_trip(size: int, data: st.DataObject) -> None:
    first = data.draw(st.integers(min_value=0, max_value=size - 1))
    last = data.draw(st.integers(min_value=first, max_value=size - 1))
    assert parse_range(f"bytes={first}-{last}", size) == (first, last)
    assert parse_range(f"bytes={first}-", size) == (first, size - 1)
    assert parse_range(f"bytes=-{size - first}", size) == (first, size - 1)


_HUGE = st.integers(4300, 6000).map(lambda n: "9" * n)


@given(_HUGE, st.sampled_from(["bytes={n}-", "bytes=0-{n}", "bytes=-{n}", "bytes={n}-{n}", "bytes={n}-1"]),
       st.integers(min_value=0, max_value=1 << 50))
def test_numerals_past_ints_limit_are_read(numeral: str, form: str, size: int) -> None:
    """Finding 6: past 4,300 digits int() raised ValueError (a 500 with a traceback)."""
    try:
        settled = parse_range(form.format(n=numeral), size)
    except errors.InvalidRange:
        return
    if settled is not None:
        first, last = settled
        assert 0 <= first <= last < size
