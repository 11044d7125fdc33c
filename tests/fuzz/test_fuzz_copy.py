"""Copy headers (gateway.s3.copy): any x-amz-copy-source and x-amz-copy-source-range gives a value or the
module's S3Error; valid ranges round-trip."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway import errors
from gateway.s3.copy import copy_range, parse_copy_source

_RANGE_PIECES = st.sampled_from(["bytes", "=", "-", "0", "7", "9" * 5000, " ", "+", "_", "\u0661", ",", "x"])


@given(st.one_of(st.text(), st.lists(_RANGE_PIECES, max_size=8).map("".join)))
def test_any_copy_range_gives_a_range_or_invalid_argument(value: str) -> None:
    try:
        settled = copy_range(value)
    except errors.InvalidArgument:
        return
    assert settled is not None
    first, last = (int(n) for n in settled.removeprefix("bytes=").split("-"))
    assert 0 <= first <= last <= 2**63


@given(st.integers(0, 2**62), st.integers(0, 2**62))
def test_valid_copy_ranges_round_trip(a: int, b: int) -> None:
    first, last = min(a, b), max(a, b)
    assert copy_range(f"bytes={first}-{last}") == f"bytes={first}-{last}"


_SOURCE_PIECES = st.sampled_from(["/", "b", "key", "?", "versionId", "=", "v", "&", "%", "%2F", "%3F", "%ZZ",
                                  "arn:", "\u00fc", "%C3", " "])


@given(st.one_of(st.text(), st.lists(_SOURCE_PIECES, max_size=10).map("".join)))
def test_any_copy_source_gives_a_source_or_an_s3_error(value: str) -> None:
    try:
        source = parse_copy_source(value)
    except errors.S3Error as exc:
        assert exc.status < 500 or exc.code == "NotImplemented"  # (access point ARNs: 501, deliberately)
        return
    assert source.bucket and source.key
    assert parse_copy_source(source.header_value()) == source
