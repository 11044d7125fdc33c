import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import errors
from gateway.s3.ranges import content_range, parse_range


@pytest.mark.parametrize("value,size,expected", [
    (None, 10, None),
    ("bytes=0-0", 10, (0, 0)),
    ("bytes=0-9", 10, (0, 9)),
    ("bytes=2-5", 10, (2, 5)),
    ("bytes=5-100", 10, (5, 9)),               # last clipped to size - 1
    ("bytes=9-9", 10, (9, 9)),
    ("bytes=3-", 10, (3, 9)),
    ("bytes=0-", 10, (0, 9)),
    ("bytes=-3", 10, (7, 9)),
    ("bytes=-10", 10, (0, 9)),
    ("bytes=-11", 10, (0, 9)),                 # suffix longer than the object: the whole object (206)
    ("bytes=-99999999999999999999", 10, (0, 9)),
    ("bytes=2800-9223372036854775807", 2890, (2800, 2889)),
    ("Bytes=1-2", 10, (1, 2)),                 # the unit is case-insensitive
    ("bytes=1-2,", 10, (1, 2)),                # an empty list element is not a second range
    (" bytes=1-2 ", 10, (1, 2)),
    ("bytes=007-008", 10, (7, 8)),
    # Finding 6: numerals past CPython's 4,300-digit int() limit were a 500 with a traceback.
    ("bytes=0-" + "9" * 5000, 10, (0, 9)),      # a huge end is the end of the object
    ("bytes=-" + "9" * 5000, 10, (0, 9)),
    ("bytes=" + "0" * 5000 + "3-4", 10, (3, 4)),
])
def test_satisfiable(value, size, expected):
    assert parse_range(value, size) == expected


@pytest.mark.parametrize("value", [
    "", "bytes", "bytes=", "bytes=-", "bytes=a-b", "bytes=invalid-range", "bytes=1", "0-1", "items=0-1",
    "bytes=5-3", "bytes=3-0", "bytes=1-0",      # last < first is invalid syntax: ignored (AWS answers 200)
    "bytes=0-1,3-4", "bytes=0-1, 5-", "bytes=-1,-2",  # multi-range: S3 serves the whole object
    "bytes=+1-2", "bytes=1-+2", "bytes=1_0-20", "bytes=١-٢", "bytes=1--2", "bytes=--2", "bytes=1-2-3",
    "bytes=0x1-2", "bytes=-1.5", "bytes=1 -2", "bytes=" + "9" * 5000 + "-1",
])
def test_ignored(value):
    assert parse_range(value, 10) is None


@pytest.mark.parametrize("value,size", [
    ("bytes=10-", 10), ("bytes=10-20", 10), ("bytes=100-200", 10),
    ("bytes=-0", 10),
    ("bytes=0-", 0), ("bytes=0-0", 0), ("bytes=-1", 0), ("bytes=-0", 0), ("bytes=5-9", 0),
    ("bytes=" + "9" * 5000 + "-", 10),
])
def test_unsatisfiable(value, size):
    with pytest.raises(errors.InvalidRange) as exc:
        parse_range(value, size)
    assert exc.value.status == 416
    assert exc.value.code == "InvalidRange"
    assert exc.value.fields == {"ActualObjectSize": str(size), "RangeRequested": value}


def test_invalid_syntax_beats_unsatisfiable():
    assert parse_range("bytes=20-10", 5) is None
    assert parse_range("bytes=1-0", 0) is None


def test_content_range():
    assert content_range(0, 9, 10) == "bytes 0-9/10"
    assert content_range(5, 5, 6) == "bytes 5-5/6"


def reference(value: str, size: int):
    """A straightforward reading of RFC 9110 section 14 with S3's single-range rule."""
    m = re.fullmatch(r"bytes=(\d*)-(\d*)", value)
    if not m or (m.group(1) == "" and m.group(2) == ""):
        return None
    first, last = m.group(1), m.group(2)
    if first == "":
        n = int(last)
        if n == 0 or size == 0:
            return "416"
        return (max(0, size - n), size - 1)
    a = int(first)
    b = int(last) if last else size - 1
    if last and b < a:
        return None
    if a >= size:
        return "416"
    return (a, min(b, size - 1))


numbers = st.one_of(st.just(""), st.integers(0, 40).map(str))


@given(numbers, numbers, st.integers(0, 30))
def test_against_reference(first, last, size):
    value = f"bytes={first}-{last}"
    expected = reference(value, size)
    if expected == "416":
        with pytest.raises(errors.InvalidRange):
            parse_range(value, size)
    else:
        assert parse_range(value, size) == expected


@given(st.text(max_size=20), st.integers(0, 1000))
def test_never_crashes_and_stays_in_bounds(value, size):
    try:
        selected = parse_range(value, size)
    except errors.InvalidRange:
        return
    if selected is not None:
        first, last = selected
        assert 0 <= first <= last < size
