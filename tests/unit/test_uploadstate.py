"""The pure parts of the gateway's multipart bookkeeping (gateway.proxy.uploadstate): reserved names, the
per-upload prefix, part record names and the state document; and the listing arithmetic of
gateway.proxy.passthrough that reads multipart ETags. No network."""
from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import errors
from gateway.format import multipart as mp
from gateway.format import sizes
from gateway.format.envelope import FLAG_MULTIPART_LAYOUT, WrappedKey, new_multipart_keys
from gateway.proxy.passthrough import listed_size
from gateway.s3.multipart_xml import multipart_part_count
from gateway.proxy.uploadstate import (
    RESERVED_KEY_PREFIX,
    UPLOADS_PREFIX,
    PartRecord,
    UploadState,
    is_reserved_key,
    stash_key,
    upload_prefix,
)

UPLOAD_ID = "VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA"
ARN = "arn:aws:kms:us-east-1:111122223333:key/x"
GIB = 1 << 30

# --- is_reserved_key ------------------------------------------------------------------------------

@pytest.mark.parametrize("key,reserved", [
    (None, False), ("", False), ("a", False), (".envelope-gateway", False), (".envelope-gateway-x/a", False),
    ("x/.envelope-gateway/a", False), (" .envelope-gateway/a", False), (".Envelope-Gateway/a", False),
    (".envelope-gateway/", True), (".envelope-gateway/uploads/abc/state", True), (".envelope-gateway/x", True),
])
def test_is_reserved_key(key, reserved):
    assert is_reserved_key(key) is reserved


def test_prefixes():
    assert RESERVED_KEY_PREFIX == ".envelope-gateway/"
    assert UPLOADS_PREFIX == ".envelope-gateway/uploads/"


# --- upload_prefix --------------------------------------------------------------------------------

def test_upload_prefix_vector():
    assert upload_prefix("u") == (".envelope-gateway/uploads/"
                                  "0bfe935e70c321c7ca3afc75ce0d0ca2f98b5422e008bb31c00c6d7f1f1c0ad6/")


@given(st.text(min_size=1, max_size=200))
def test_upload_prefix_shape(upload_id):
    prefix = upload_prefix(upload_id)
    assert prefix == upload_prefix(upload_id)  # stable
    assert prefix.startswith(UPLOADS_PREFIX) and is_reserved_key(prefix)
    leaf = prefix[len(UPLOADS_PREFIX):]
    assert leaf == hashlib.sha256(upload_id.encode()).hexdigest() + "/"
    assert "/" not in leaf[:-1]


@given(st.text(max_size=50), st.text(max_size=50))
def test_upload_prefix_differs_per_id(a, b):
    assert (upload_prefix(a) == upload_prefix(b)) == (a == b)


def test_upload_prefix_ids_that_look_like_paths():
    ids = [UPLOAD_ID, UPLOAD_ID + "x", "../../etc", "a/b", "", " "]
    prefixes = [upload_prefix(i) for i in ids]
    assert len(set(prefixes)) == len(ids)
    assert all(p.startswith(UPLOADS_PREFIX) and p.count("/") == 3 for p in prefixes)


# --- PartRecord -----------------------------------------------------------------------------------

RECORD = PartRecord(7, "0bbc18cdea1c4aaa17777d441214774a", 5 * 1024 * 1024, bytes(range(32)), False)


def test_part_record_name_layout():
    name = RECORD.name(UPLOAD_ID)
    prefix = upload_prefix(UPLOAD_ID)
    assert name.startswith(prefix)
    leaf = name[len(prefix):]
    number, etag, size, salt, kind = leaf.split(".")
    assert (number, size, salt, kind) == ("p00007", "5242880", bytes(range(32)).hex(), "p")
    assert "=" not in etag and "/" not in etag
    stashed = PartRecord(10000, "e", 0, bytes(32), True).name(UPLOAD_ID)
    assert stashed.startswith(prefix + "p10000.") and stashed.endswith(".0." + "00" * 32 + ".s")


def test_part_record_parse_full_name_and_leaf():
    name = RECORD.name(UPLOAD_ID)
    assert PartRecord.parse(name) == RECORD
    assert PartRecord.parse(name.rsplit("/", 1)[1]) == RECORD


def test_part_record_names_sort_by_part_number():
    names = [PartRecord(n, "e", 1, bytes(32), False).name(UPLOAD_ID) for n in (1, 2, 10, 100, 9999, 10000)]
    assert sorted(names) == names


ETAG_TEXT = st.one_of(
    st.binary(min_size=16, max_size=16).map(bytes.hex),
    st.tuples(st.binary(min_size=16, max_size=16), st.integers(1, 10000)).map(lambda t: f"{t[0].hex()}-{t[1]}"),
    st.text(st.characters(blacklist_categories=("Cs",)) | st.sampled_from('-".,/ '), min_size=1, max_size=80),
)
RECORDS = st.builds(PartRecord, number=st.integers(1, 10000), etag=ETAG_TEXT, size=st.integers(0, 5 * GIB),
                    salt=st.binary(min_size=32, max_size=32), stashed=st.booleans())


@given(RECORDS, st.text(min_size=1, max_size=80))
def test_part_record_round_trip(record, upload_id):
    name = record.name(upload_id)
    assert name.startswith(upload_prefix(upload_id))
    assert name.isascii() and "/" not in name[len(upload_prefix(upload_id)):]
    assert PartRecord.parse(name) == record
    assert PartRecord.parse(name.rsplit("/", 1)[-1]) == record


@given(st.integers(1, 10000), st.binary(min_size=32, max_size=32))
def test_part_record_parse_of_a_stash_is_none(number, salt):
    assert PartRecord.parse(stash_key(UPLOAD_ID, number, salt)) is None


def test_stash_key_layout():
    assert stash_key(UPLOAD_ID, 3, b"\xab" * 32) == upload_prefix(UPLOAD_ID) + "s00003." + "ab" * 32


@pytest.mark.parametrize("name", [
    upload_prefix(UPLOAD_ID) + "state",
    "state",
    upload_prefix(UPLOAD_ID),
    "",
    "p00001",
    "p00001.YQ.5.00",  # four fields
    "p00001.YQ.5.00.p.p",  # six fields
    "q00001.YQ.5.00.p",  # not a record's letter
    "s00001.YQ.5.00.p",
    "p00001.YQ.5.00.x",  # unknown kind
    "p00001.YQ.5.00.P",
    "p.YQ.5.00.p",  # no number
    "px.YQ.5.00.p",
    "p00001.YQ.five.00.p",  # size not a number
    "p00001.YQ..00.p",
    "p00001.YQ.5.zz.p",  # salt not hex
    "p00001.YQ.5.0.p",  # odd hex
    "p00001.Y.5.00.p",  # not base64
    "p00001._w.5.00.p",  # base64 of a byte that is not UTF-8
    "p00001.YQ.5.00.p/",  # a "directory"
])
def test_part_record_parse_non_records_are_none(name):
    assert PartRecord.parse(name) is None


# --- UploadState ----------------------------------------------------------------------------------

def state(key: str = "dir/ü&<>.bin", upload_id: str = UPLOAD_ID, wrapped=None) -> UploadState:
    header, _ = new_multipart_keys(bytes(32))
    return UploadState(key, upload_id, header, wrapped or [WrappedKey("kms", ARN, b"blob")])


def test_upload_state_round_trip():
    original = state()
    encoded = original.encode("bkt")
    assert UploadState.decode(encoded) == original
    doc = json.loads(encoded)
    assert doc["format"] == 1 and doc["bucket"] == "bkt" and doc["key"] == "dir/ü&<>.bin"
    assert doc["upload_id"] == UPLOAD_ID
    assert doc["envelope"]["envelope-key-0"] == f"kms;{ARN};YmxvYg"
    assert UploadState.decode(encoded).header.flags & FLAG_MULTIPART_LAYOUT
    assert encoded == original.encode("bkt")  # deterministic (sorted keys)


def test_upload_state_round_trip_several_wrapped_keys():
    wrapped = [WrappedKey("kms", ARN, b"blob"), WrappedKey("kms", ARN + "2", bytes(range(256))),
               WrappedKey("future.scheme+1", "id", b"\x00")]
    original = state(wrapped=wrapped)
    assert UploadState.decode(original.encode("b")) == original


@given(st.text(max_size=100), st.text(min_size=1, max_size=100))
def test_upload_state_round_trip_any_key_and_id(key, upload_id):
    original = state(key, upload_id)
    assert UploadState.decode(original.encode("bucket")) == original


def good_doc() -> dict:
    return json.loads(state().encode("bkt"))


def with_(**changes) -> bytes:
    doc = good_doc()
    for name, value in changes.items():
        if value is ...:
            del doc[name]
        else:
            doc[name] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize("data", [
    b"", b"garbage", b"\xff\xfe", b"{", b"{}", b'{"format": 1}',
    with_(format=2), with_(format=0), with_(format="1"), with_(format=None), with_(format=...),
    with_(key=...), with_(upload_id=...), with_(envelope=...),
    with_(envelope={}),  # no header: NotEncrypted
    with_(envelope={"envelope-header": "!!!", "envelope-key-0": f"kms;{ARN};YmxvYg"}),
    with_(envelope={**good_doc()["envelope"], "envelope-key-0": "kms;only-two"}),
    with_(envelope={**good_doc()["envelope"], "envelope-header": "AQ"}),
], ids=["empty", "text", "binary", "truncated", "empty-object", "format-only", "format-2", "format-0",
        "format-string", "format-null", "no-format", "no-key", "no-upload-id", "no-envelope", "empty-envelope",
        "bad-header", "bad-wrapped-key", "short-header"])
def test_upload_state_decode_unreadable_is_internal_error(data):
    with pytest.raises(errors.InternalError) as caught:
        UploadState.decode(data)
    assert type(caught.value) is errors.InternalError


def test_upload_state_decode_non_object_json_is_internal_error():
    for data in (b"[]", b"null", b"1", b'"state"', with_(envelope=[]), with_(envelope="x")):
        with pytest.raises(errors.InternalError):
            UploadState.decode(data)


# --- listing sizes from multipart ETags (gateway.proxy.passthrough) -------------------------------

@pytest.mark.parametrize("etag,count", [
    ("abc-3", 3), ('"abc-3"', 3), ('"9b9d3d3707f26b0895ad4008662e2dcb-10000"', 10000), (' "abc-12" ', 12),
    ("-1", 1), ("a-b-2", 2),
    ("abc-03", None), ('"abc-0"', None), ("abc", None), ('"abc"', None), ("abc-", None), ('"abc-"', None),
    ("", None), ('""', None), ("abc-x", None), ("abc-1a", None), ("abc-+1", None), ("abc- 1", None),
    ("abc-\u0663", None), ("abc-1_0", None), ('"9b9d3d3707f26b0895ad4008662e2dcb"', None),
])
def test_multipart_part_count(etag, count):
    assert multipart_part_count(etag) == count


def plain_or_none(stored: int) -> int | None:
    try:
        return sizes.plaintext_size(stored)
    except ValueError:
        return None


@pytest.mark.parametrize("stored", [0, 15, 16, 17, 100, 65_551, 65_552, 65_553, 65_568, 65_569, 131_104,
                                    5 * GIB, 5 * GIB + 123])
def test_listed_size_plain_etag(stored):
    assert listed_size(stored, '"0bbc18cdea1c4aaa17777d441214774a"') == plain_or_none(stored)


@pytest.mark.parametrize("stored", [15, 65_568])  # smaller than a tag; a final segment of only its tag
def test_listed_size_impossible_plain_is_none(stored):
    assert listed_size(stored, '"e"') is None


@given(st.integers(0, 1 << 45), st.sampled_from(['"{}"', "{}", ' "{}" ']))
def test_listed_size_plain_property(n, form):
    etag = form.format("0bbc18cdea1c4aaa17777d441214774a")
    assert listed_size(sizes.ciphertext_size(n), etag) == n
    assert listed_size(n, etag) == plain_or_none(n)


@given(st.integers(0, 1 << 45), st.integers(1, 10000))
def test_listed_size_multipart_property(n, parts):
    stored = mp.stored_size(n, parts)
    assert listed_size(stored, f'"9b9d3d3707f26b0895ad4008662e2dcb-{parts}"') == n
    assert listed_size(stored, f"9b9d3d3707f26b0895ad4008662e2dcb-{parts}") == n


@given(st.integers(0, 1 << 40), st.integers(1, 10000))
def test_listed_size_multipart_matches_the_format(stored, parts):
    try:
        expected = mp.plaintext_size(stored, parts)
    except ValueError:
        expected = None
    assert listed_size(stored, f'"e-{parts}"') == expected


@pytest.mark.parametrize("stored,etag", [
    (0, '"e-1"'),  # smaller than a trailer
    (mp.stored_size(0, 2) - 1, '"e-2"'),
    (mp.stored_size(0, 1) + sizes.SEGMENT_SIZE_BYTES, '"e-1"'),  # a partial segment as long as a full one
    (mp.stored_size(10, 1), '"e-10001"'),  # more parts than S3 allows
    (10 * GIB, '"e-99999999"'),
])
def test_listed_size_impossible_multipart_is_none(stored, etag):
    assert listed_size(stored, etag) is None


def test_listed_size_multipart_vectors():
    assert listed_size(mp.stored_size(0, 1), '"e-1"') == 0
    assert listed_size(mp.stored_size(5 * 1024 * 1024, 2), '"e-2"') == 5 * 1024 * 1024
    # The same stored size reads differently as a plain object: the ETag picks the arithmetic.
    stored = mp.stored_size(1000, 1)
    assert listed_size(stored, '"e"') == plain_or_none(stored) != 1000
