"""The request headers of CopyObject and UploadPartCopy (gateway.s3.copy): x-amz-copy-source as SDKs encode it,
its round trip through what the gateway sends the store, copy ranges, the metadata directive and the source
conditions."""
from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from gateway import errors
from gateway.s3.copy import CopySource, copy_range, metadata_directive, parse_copy_source, source_conditions

# --- parse_copy_source ----------------------------------------------------------------------------

@pytest.mark.parametrize("value,expected", [
    ("bucket/key", CopySource("bucket", "key", None)),
    ("/bucket/key", CopySource("bucket", "key", None)),
    ("bucket/dir/sub/key.txt", CopySource("bucket", "dir/sub/key.txt", None)),
    ("/bucket/dir/", CopySource("bucket", "dir/", None)),
    ("bucket/dir%2Fkey", CopySource("bucket", "dir/key", None)),
    ("bucket/what%3Fnot", CopySource("bucket", "what?not", None)),
    ("bucket/a%20b%20c", CopySource("bucket", "a b c", None)),
    ("bucket/a+b", CopySource("bucket", "a+b", None)),  # path encoding: '+' is a plus, not a space
    ("bucket/a%2Bb", CopySource("bucket", "a+b", None)),
    ("bucket/100%25", CopySource("bucket", "100%", None)),
    ("bucket/%C3%BC%26%3C%3E", CopySource("bucket", "ü&<>", None)),
    ("bucket/ü日本", CopySource("bucket", "ü日本", None)),  # not encoded at all: taken as is
    ("bucket/key?versionId=v", CopySource("bucket", "key", "v")),
    ("/bucket/key%3Fx?versionId=3%2FL4kqtJlcpXroDTDmJ%2BrmSpXd3dIbrHY",
     CopySource("bucket", "key?x", "3/L4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY")),
    ("bucket/key?", CopySource("bucket", "key", None)),
    ("my.bucket-1/k", CopySource("my.bucket-1", "k", None)),
])
def test_parse_copy_source(value, expected):
    assert parse_copy_source(value) == expected


def test_parse_copy_source_as_botocore_encodes_it():
    # botocore's handle_copy_source_param: quote(bucket/key, safe="/~") + "?versionId=" + quoted version.
    key = "dir/a b+c?d%e&f=g#h~ü"
    value = quote(f"bkt/{key}", safe="/~") + "?versionId=" + quote("v 1/+", safe="")
    assert parse_copy_source(value) == CopySource("bkt", key, "v 1/+")


@pytest.mark.parametrize("value", [
    "bucket/key?versionid=v", "bucket/key?partNumber=1", "bucket/key?versionId=", "bucket/key?versionId",
    "bucket/key?x=y", "bucket/a?b",  # a '?' in the key must be encoded; raw, it starts the query
])
def test_parse_copy_source_unknown_parameter_is_invalid_argument(value):
    with pytest.raises(errors.InvalidArgument) as caught:
        parse_copy_source(value)
    assert caught.value.code == "InvalidArgument" and caught.value.status == 400


@pytest.mark.parametrize("value", [
    "", "/", "//", "bucket", "/bucket", "bucket/", "/bucket/",
    "/bucket?versionId=v", "%2F", "bucket%2F", "?versionId=v",
])
def test_parse_copy_source_missing_bucket_or_key_is_invalid_argument(value):
    with pytest.raises(errors.InvalidArgument):
        parse_copy_source(value)


@pytest.mark.parametrize("value", [
    "arn:aws:s3:us-west-2:123456789012:accesspoint/my-ap/object/key",
    "/arn:aws:s3:us-west-2:123456789012:accesspoint/my-ap/object/key",
    "arn%3Aaws%3As3%3Aus-west-2%3A123456789012%3Aaccesspoint/my-ap/object/key",
    "arn:aws:s3-outposts:us-west-2:123456789012:outpost/op-1/accesspoint/ap/object/key?versionId=v",
])
def test_parse_copy_source_arn_is_not_implemented(value):
    with pytest.raises(errors.NotImplementedS3) as caught:
        parse_copy_source(value)
    assert caught.value.code == "NotImplemented" and caught.value.status == 501


def test_header_value_vectors():
    assert CopySource("b", "k", None).header_value() == "b/k"
    assert CopySource("b", "dir/a b?c%d+e", None).header_value() == "b/dir/a%20b%3Fc%25d%2Be"
    assert CopySource("b", "ü", "v/1+ 2").header_value() == "b/%C3%BC?versionId=v%2F1%2B%202"
    assert CopySource("b", "k", "v").query() == [("versionId", "v")]
    assert CopySource("b", "k", None).query() == []


BUCKETS = st.from_regex(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", fullmatch=True)
KEY_CHARS = st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from("?%+ /&=#~\t")
COPY_KEYS = st.text(KEY_CHARS, min_size=1, max_size=60)
VERSIONS = st.none() | st.text(KEY_CHARS, min_size=1, max_size=40)


@given(BUCKETS, COPY_KEYS, VERSIONS)
def test_header_value_round_trips(bucket, key, version):
    source = CopySource(bucket, key, version)
    value = source.header_value()
    assert value.isascii() and " " not in value and value.count("?") <= 1
    assert parse_copy_source(value) == source
    assert parse_copy_source("/" + value) == source


# --- copy_range -----------------------------------------------------------------------------------

@pytest.mark.parametrize("value,expected", [
    (None, None),
    ("bytes=0-9", "bytes=0-9"),
    ("bytes=0-0", "bytes=0-0"),
    ("bytes=5-5", "bytes=5-5"),
    (" bytes=100-5242979 ", "bytes=100-5242979"),
    ("bytes=0-5368709119", "bytes=0-5368709119"),
    # Numerals past int64 are read capped (at 2**63: past any object), whatever their length (finding 6).
    ("bytes=0-99999999999999999999", "bytes=0-9223372036854775808"),
    ("bytes=0-" + "9" * 5000, "bytes=0-9223372036854775808"),
    ("bytes=" + "0" * 5000 + "7-8", "bytes=7-8"),
])
def test_copy_range(value, expected):
    assert copy_range(value) == expected


@pytest.mark.parametrize("value", [
    "bytes=5-4", "bytes=-5", "bytes=5-", "bytes=-", "items=0-1", "Bytes=0-1", "bytes 0-1", "bytes=0-1,3-4",
    "bytes=a-b", "bytes=0x0-0x9", "bytes=+0-9", "bytes=0 - 9", "bytes=0-9 garbage", "", "garbage", "0-9",
    "bytes=1_0-2_0", "bytes=\u0661-\u0662", "bytes=" + "9" * 5000 + "-1",
])
def test_copy_range_invalid_is_invalid_argument(value):
    with pytest.raises(errors.InvalidArgument) as caught:
        copy_range(value)
    assert caught.value.fields == {"ArgumentName": "x-amz-copy-source-range", "ArgumentValue": value}


def test_copy_range_non_ascii_digits_are_invalid_argument():
    # gateway.s3.ranges refuses these deliberately (its _number): a copy range with them is malformed (400),
    # not a range that parse_range would ignore and the copy then fail as InvalidRange (416).
    for value in ("bytes=\u0660-\u0669", "bytes=0-\uff19", "bytes=\u0967-\u0968"):
        with pytest.raises(errors.InvalidArgument):
            copy_range(value)


@given(st.integers(0, 2**63), st.integers(0, 2**63))
def test_copy_range_property(first, last):
    value = f"bytes={first}-{last}"
    if first <= last:
        assert copy_range(value) == value
    else:
        with pytest.raises(errors.InvalidArgument):
            copy_range(value)


# --- metadata_directive ---------------------------------------------------------------------------

@pytest.mark.parametrize("value,expected", [
    (None, "COPY"), ("", "COPY"), ("COPY", "COPY"), ("copy", "COPY"), ("Copy", "COPY"), (" COPY ", "COPY"),
    ("REPLACE", "REPLACE"), ("replace", "REPLACE"), ("rePlace", "REPLACE"),
])
def test_metadata_directive(value, expected):
    assert metadata_directive(value) == expected


@pytest.mark.parametrize("value", ["MERGE", "COPY,REPLACE", "COPYX", "REPLACE COPY", "none", "C0PY"])
def test_metadata_directive_unknown_is_invalid_argument(value):
    with pytest.raises(errors.InvalidArgument) as caught:
        metadata_directive(value)
    assert caught.value.fields == {"ArgumentName": "x-amz-metadata-directive", "ArgumentValue": value}


# --- source_conditions ----------------------------------------------------------------------------

def test_source_conditions_maps_all_four_case_insensitively():
    headers = CIMultiDict([
        ("X-Amz-Copy-Source", "/b/k"),
        ("X-Amz-Copy-Source-If-Match", '"e1"'),
        ("x-amz-copy-source-if-none-match", '"e2"'),
        ("X-AMZ-COPY-SOURCE-IF-MODIFIED-SINCE", "Wed, 28 Oct 2009 22:32:00 GMT"),
        ("x-Amz-Copy-Source-If-Unmodified-Since", "Thu, 29 Oct 2009 22:32:00 GMT"),
        ("If-Match", '"not-the-source"'),
        ("X-Amz-Copy-Source-Range", "bytes=0-1"),
    ])
    expected = {"if-match": '"e1"', "if-none-match": '"e2"', "if-modified-since": "Wed, 28 Oct 2009 22:32:00 GMT",
                "if-unmodified-since": "Thu, 29 Oct 2009 22:32:00 GMT"}
    assert source_conditions(headers) == expected
    assert source_conditions(CIMultiDictProxy(headers)) == expected


@pytest.mark.parametrize("name,plain", [
    ("X-Amz-Copy-Source-If-Match", "if-match"),
    ("X-Amz-Copy-Source-If-None-Match", "if-none-match"),
    ("X-Amz-Copy-Source-If-Modified-Since", "if-modified-since"),
    ("X-Amz-Copy-Source-If-Unmodified-Since", "if-unmodified-since"),
])
def test_source_conditions_each_alone(name, plain):
    assert source_conditions(CIMultiDictProxy(CIMultiDict({name: "v", "Host": "h"}))) == {plain: "v"}


def test_source_conditions_none():
    assert source_conditions(CIMultiDict({"If-Match": "x", "If-None-Match": "y", "X-Amz-Copy-Source": "b/k"})) == {}
    assert source_conditions(CIMultiDict()) == {}


def test_source_conditions_keeps_values_verbatim():
    headers = CIMultiDict({"x-amz-copy-source-if-match": '"a", "b"', "x-amz-copy-source-if-none-match": "*"})
    assert source_conditions(headers) == {"if-match": '"a", "b"', "if-none-match": "*"}
