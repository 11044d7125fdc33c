"""`gateway.tools.rewrite.rewrite_envelope` against moto server: objects written through the real gateway get new
`envelope-key-*` entries by a server-side self-copy that keeps their bytes, ETag (`-M` included), listed size,
user metadata, headers and tags; a concurrent overwrite is never clobbered; nothing else is touched."""
from __future__ import annotations

import os
import uuid

import pytest

from gateway import errors
from gateway.format.envelope import WrappedKey, parse_metadata
from gateway.tools.rewrite import Outcome, rewrite_envelope
from tests.integration.test_multipart import MiB, _upload

PARTNER = WrappedKey("rsa-oaep-sha256", "partner-1", b"\x01" * 40)  # a scheme the gateway skips when reading
ATTRIBUTES = dict(Metadata={"owner": "ana", "project": "x-1"}, ContentType="text/csv", CacheControl="max-age=60",
                  ContentDisposition='attachment; filename="r.csv"', ContentLanguage="fr")
LAYOUTS = {  # name: part sizes, or a single PUT's size
    "empty": 0, "one-byte": 1, "multi-segment": 200_000,
    "multipart-trailer-a-part": [5 * MiB] * 3, "multipart-trailer-appended": [5 * MiB, 70_000],
}


def _write(s3, bucket: str, key: str, layout, **attributes) -> bytes:
    if isinstance(layout, int):
        data = os.urandom(layout)
        s3.put_object(Bucket=bucket, Key=key, Body=data, Tagging="team=red&tier=1", **attributes)
        return data
    chunks = [os.urandom(size) for size in layout]
    _upload(s3, bucket, key, list(enumerate(chunks, start=1)), Tagging="team=red&tier=1", **attributes)
    return b"".join(chunks)


def _add_partner(header, entries):
    return [*entries, PARTNER]


def _no_uploads_left(store, bucket: str, key: str) -> None:
    uploads = store.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", [])
    assert uploads == []


@pytest.mark.parametrize("layout", LAYOUTS)
def test_rewrite_keeps_bytes_etag_size_and_attributes(stack, s3, store, layout):
    key = f"rewrite/{uuid.uuid4().hex}/{layout} é.bin"
    data = _write(s3, stack.bucket, key, LAYOUTS[layout], **ATTRIBUTES)
    before = store.head_object(Bucket=stack.bucket, Key=key)
    stored_before = store.get_object(Bucket=stack.bucket, Key=key)["Body"].read()
    listed_before = s3.list_objects_v2(Bucket=stack.bucket, Prefix=key)["Contents"]

    assert rewrite_envelope(store, stack.bucket, key, _add_partner) is Outcome.REWRITTEN

    after = store.head_object(Bucket=stack.bucket, Key=key)
    assert after["ETag"] == before["ETag"]
    assert store.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == stored_before
    header_before, entries_before = parse_metadata(before["Metadata"])
    assert parse_metadata(after["Metadata"]) == (header_before, [*entries_before, PARTNER])
    assert after["Metadata"]["envelope-header"] == before["Metadata"]["envelope-header"]
    for field in ("ContentType", "CacheControl", "ContentDisposition", "ContentLanguage", "ContentLength"):
        assert after[field] == before[field], field
    assert {k: v for k, v in after["Metadata"].items() if not k.startswith("envelope-")} == ATTRIBUTES["Metadata"]
    tags = store.get_object_tagging(Bucket=stack.bucket, Key=key)["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("team", "red"), ("tier", "1")]
    # Through the gateway: the same plaintext, headers and listed size (computed from the ETag's -M).
    got = s3.get_object(Bucket=stack.bucket, Key=key)
    assert got["Body"].read() == data
    assert got["Metadata"] == ATTRIBUTES["Metadata"] and got["ContentType"] == "text/csv"
    listed = s3.list_objects_v2(Bucket=stack.bucket, Prefix=key)["Contents"]
    assert [(e["Key"], e["ETag"], e["Size"]) for e in listed] == [(key, before["ETag"], len(data))]
    assert [(e["Key"], e["ETag"], e["Size"]) for e in listed_before] == [(key, before["ETag"], len(data))]
    _no_uploads_left(store, stack.bucket, key)


def test_nothing_is_written_when_the_entries_stay(stack, s3, store):
    key = f"rewrite/{uuid.uuid4().hex}/same"
    s3.put_object(Bucket=stack.bucket, Key=key, Body=b"x" * 10)
    before = store.head_object(Bucket=stack.bucket, Key=key)
    seen = []
    assert rewrite_envelope(store, stack.bucket, key, lambda h, e: seen.append(e)) is Outcome.UNCHANGED
    assert rewrite_envelope(store, stack.bucket, key, lambda h, e: list(e)) is Outcome.UNCHANGED
    assert seen[0][0].scheme == "kms"
    after = store.head_object(Bucket=stack.bucket, Key=key)
    assert (after["LastModified"], after["ETag"], after["Metadata"]) == (before["LastModified"], before["ETag"],
                                                                       before["Metadata"])


def test_objects_not_written_by_the_gateway_and_its_own_state_are_left_alone(stack, store):
    key = f"rewrite/{uuid.uuid4().hex}/plain"
    store.put_object(Bucket=stack.bucket, Key=key, Body=b"plain", Metadata={"a": "b"})
    before = store.head_object(Bucket=stack.bucket, Key=key)

    def never(header, entries):
        raise AssertionError("update called")

    assert rewrite_envelope(store, stack.bucket, key, never) is Outcome.NOT_ENCRYPTED
    assert store.head_object(Bucket=stack.bucket, Key=key)["LastModified"] == before["LastModified"]
    with pytest.raises(errors.InvalidArgument, match="gateway's own state"):
        rewrite_envelope(store, stack.bucket, ".envelope-gateway/uploads/x/state", never)


@pytest.mark.parametrize("layout", ["one-byte", "multipart-trailer-appended"])
def test_an_object_overwritten_meanwhile_is_not_clobbered(stack, s3, store, layout):
    key = f"rewrite/{uuid.uuid4().hex}/{layout}"
    _write(s3, stack.bucket, key, LAYOUTS[layout])
    newer = os.urandom(1000)

    def overwrite_then_add(header, entries):
        s3.put_object(Bucket=stack.bucket, Key=key, Body=newer)  # lands between the HEAD and the copy
        return [*entries, PARTNER]

    with pytest.raises(errors.PreconditionFailed, match="changed meanwhile"):
        rewrite_envelope(store, stack.bucket, key, overwrite_then_add)
    assert s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == newer
    assert len(parse_metadata(store.head_object(Bucket=stack.bucket, Key=key)["Metadata"])[1]) == 1
    _no_uploads_left(store, stack.bucket, key)


def test_parts_not_numbered_from_one_are_refused_clearly(stack, s3, store):
    """The gateway stores a client's part numbers as they are; the store then cannot be asked for part 2."""
    key = f"rewrite/{uuid.uuid4().hex}/gaps"
    data = [os.urandom(5 * MiB), os.urandom(1000)]
    _upload(s3, stack.bucket, key, [(1, data[0]), (3, data[1])])
    before = store.head_object(Bucket=stack.bucket, Key=key)
    with pytest.raises(errors.UnsupportedFormat, match="not numbered"):
        rewrite_envelope(store, stack.bucket, key, _add_partner)
    assert store.head_object(Bucket=stack.bucket, Key=key)["Metadata"] == before["Metadata"]
    assert s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == b"".join(data)
