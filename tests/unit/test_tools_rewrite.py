"""The pure parts of `gateway.tools.rewrite`: which metadata a rewrite writes, which attributes the self-copy
carries over, and the store part ranges of a copy that keeps the part boundaries."""
from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import errors
from gateway.format.envelope import WrappedKey, metadata_for, new_object_key, parse_metadata
from gateway.format.multipart import store_part_ranges
from gateway.tools.rewrite import kept_attributes, rewritten_metadata

HEADER, _ = new_object_key(bytes(32), salt=bytes(range(32)))
OLD = WrappedKey("kms", "arn:aws:kms:eu-west-1:1:key/old", b"o" * 180)
NEW = WrappedKey("kms", "arn:aws:kms:eu-west-1:1:key/new", b"n" * 180)
PARTNER = WrappedKey("rsa-oaep-sha256", "partner", b"p" * 40)


def test_only_the_key_entries_change_and_they_are_renumbered():
    stored = {**metadata_for(HEADER, [OLD]), "envelope-key-7": PARTNER.encode(), "envelope-future": "kept",
              "owner": "ana", "Mixed-Case": "v"}
    out = rewritten_metadata(stored, HEADER, [NEW, PARTNER])
    assert out == {"envelope-header": stored["envelope-header"], "envelope-key-0": NEW.encode(),
                   "envelope-key-1": PARTNER.encode(), "envelope-future": "kept", "owner": "ana", "Mixed-Case": "v"}
    assert parse_metadata(out) == (HEADER, [NEW, PARTNER])


def test_an_object_keeps_at_least_one_key_and_fits_in_two_kilobytes():
    with pytest.raises(errors.InvalidArgument):
        rewritten_metadata(metadata_for(HEADER, [OLD]), HEADER, [])
    big = WrappedKey("kms", "arn:aws:kms:eu-west-1:1:key/x", b"k" * 400)
    assert rewritten_metadata({}, HEADER, [big] * 3)
    with pytest.raises(errors.MetadataTooLarge):
        rewritten_metadata({}, HEADER, [big] * 4)


def test_the_copy_is_told_every_attribute_that_replace_would_drop():
    head = {"ContentType": "text/csv", "ContentEncoding": "gzip", "ContentLanguage": "fr", "CacheControl": "no-cache",
            "ContentDisposition": "inline", "WebsiteRedirectLocation": "/x", "StorageClass": "STANDARD_IA",
            "ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "arn:k", "BucketKeyEnabled": True,
            "ObjectLockMode": "GOVERNANCE", "ObjectLockLegalHoldStatus": "ON",
            "ObjectLockRetainUntilDate": datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc),
            "ExpiresString": "Wed, 21 Oct 2015 07:28:00 GMT",
            "ETag": '"e"', "ContentLength": 5, "LastModified": "x", "Metadata": {"a": "b"}, "TagCount": 2}
    params = kept_attributes(head)
    assert params.pop("Expires") == datetime.datetime(2015, 10, 21, 7, 28, tzinfo=datetime.timezone.utc)
    assert params == {name: value for name, value in head.items()
                      if name not in ("ExpiresString", "ETag", "ContentLength", "LastModified", "Metadata",
                                      "TagCount")}
    assert kept_attributes({"ContentType": "a/b", "CacheControl": None}) == {"ContentType": "a/b"}


@pytest.mark.parametrize("head, message", [({"SSECustomerAlgorithm": "AES256"}, "SSE-C"),
                                           ({"ExpiresString": "soon"}, "Expires")])
def test_attributes_that_cannot_be_kept_are_refused(head, message):
    with pytest.raises(errors.InvalidArgument, match=message):
        kept_attributes(head)


def test_store_part_ranges():
    assert store_part_ranges([5, 3, 1]) == [(0, 4), (5, 7), (8, 8)]
    assert store_part_ranges([]) == []
    with pytest.raises(ValueError):
        store_part_ranges([5, 0])


@given(st.lists(st.integers(1, 10**10), min_size=1, max_size=50))
def test_store_part_ranges_tile_the_object(sizes):
    ranges = store_part_ranges(sizes)
    assert ranges[0][0] == 0 and ranges[-1][1] == sum(sizes) - 1
    assert [last - first + 1 for first, last in ranges] == sizes
    assert all(a[1] + 1 == b[0] for a, b in zip(ranges, ranges[1:]))
