"""Migrating a bucket of objects written around the gateway, against moto server with real gateway processes: a
gateway with the bucket opted in (`migration.plaintext_read_buckets`) serves them as stored, flagged in its
metrics and audit log, while a damaged envelope is still refused and every write is encrypted; then
`envelope-gateway encrypt-existing` (a subprocess with only the store's and KMS's credentials) encrypts them in
place, and the gateway reads them back byte for byte."""
from __future__ import annotations

import json
import os
import urllib.request
import uuid

import pytest
from botocore.exceptions import ClientError

from tests.conftest import client_for, gateway_config, start_gateway, store_env
from tests.integration.test_multipart import _upload

MiB = 1024 * 1024
BUCKET = "legacy-plain"  # opted in by the pattern below
CONTENT_TYPE = "application/x-legacy"
PARTS = [8 * MiB, 5 * MiB + 123]  # the large object, uploaded straight to the store in two parts


@pytest.fixture(scope="module")
def mig_gateway(stack, store, tmp_path_factory):
    store.create_bucket(Bucket=BUCKET)
    config = gateway_config(stack.store_url, stack.key_arn, stack.access_key_id, stack.secret_access_key)
    config["migration"] = {"plaintext_read_buckets": ["legacy-*"]}
    gateway = start_gateway(tmp_path_factory.mktemp("migration"), "migration", config, store_env(stack.store_url))
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def s3m(mig_gateway, stack):
    return client_for(stack, mig_gateway.url)


def put_around(store, bucket: str, key: str, data: bytes, parts: list[int] | None = None) -> None:
    """Write an object straight to the store (no envelope), with user metadata, a Content-Type and a tag."""
    extra = dict(Metadata={"owner": "legacy-app"}, ContentType=CONTENT_TYPE, Tagging="origin=legacy")
    if parts is None:
        store.put_object(Bucket=bucket, Key=key, Body=data, **extra)
        return
    offsets = [sum(parts[:i]) for i in range(len(parts) + 1)]
    _upload(store, bucket, key, [(n, data[offsets[n - 1]:offsets[n]]) for n in range(1, len(parts) + 1)], **extra)


SIZES = {"empty": 0, "one-byte": 1, "multi-segment": 200_000 + 7, "large": sum(PARTS)}


@pytest.fixture(scope="module")
def legacy(store, stack) -> dict[str, tuple[str, bytes]]:
    """The objects of SIZES written around the gateway, in BUCKET and in the stack's (not opted-in) bucket."""
    prefix = f"legacy/{uuid.uuid4().hex}/"
    out = {}
    for name, size in SIZES.items():
        key, data = f"{prefix}{name} ü.bin", os.urandom(size)
        for bucket in (BUCKET, stack.bucket):
            put_around(store, bucket, key, data, PARTS if name == "large" else None)
        out[name] = key, data
    return out


def metric(gateway, name: str) -> float:
    text = urllib.request.urlopen(gateway.admin_url + "/metrics", timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " ")
               or line.startswith(name + "{"))


def audit_events(gateway, event: str) -> list[dict]:
    records = [json.loads(line) for line in gateway.log().splitlines() if line.startswith('{"')]
    return [r for r in records if r.get("event") == event]


# --- plaintext reads ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", SIZES)
def test_objects_written_around_the_gateway_are_served_as_stored(mig_gateway, s3m, legacy, stack, name):
    key, data = legacy[name]
    before = metric(mig_gateway, "envelope_plaintext_reads_total")
    got = s3m.get_object(Bucket=BUCKET, Key=key)
    assert got["Body"].read() == data
    assert got["ContentType"] == CONTENT_TYPE and got["Metadata"] == {"owner": "legacy-app"}
    assert "ServerSideEncryption" not in got  # not claimed: it is not encrypted
    head = s3m.head_object(Bucket=BUCKET, Key=key)
    assert head["ContentLength"] == len(data) and head["ContentType"] == CONTENT_TYPE
    assert metric(mig_gateway, "envelope_plaintext_reads_total") - before == 2
    assert any(r["key"] == key and r["bucket"] == BUCKET and r["principal"] == stack.access_key_id
               and r["outcome"] == "served" for r in audit_events(mig_gateway, "PlaintextRead"))


@pytest.mark.parametrize("byte_range", ["bytes=0-0", "bytes=65537-65540", "bytes=65530-131100", "bytes=-5",
                                        "bytes=70000-", "bytes=199990-999999999", "bytes=5000000-5000100"])
def test_ranged_reads_of_plaintext_objects(s3m, legacy, byte_range):
    for name in ("multi-segment", "large"):
        key, data = legacy[name]
        first, _, last = byte_range.removeprefix("bytes=").partition("-")
        if first == "":
            want = data[-int(last):]
        else:
            want = data[int(first):int(last) + 1 if last else None]
        if not want:
            with pytest.raises(ClientError) as err:
                s3m.get_object(Bucket=BUCKET, Key=key, Range=byte_range)
            assert err.value.response["Error"]["Code"] == "InvalidRange"
            continue
        got = s3m.get_object(Bucket=BUCKET, Key=key, Range=byte_range)
        assert got["Body"].read() == want, (name, byte_range)
        assert got["ContentRange"].endswith(f"/{len(data)}")


def test_part_numbers_and_conditionals_of_plaintext_objects(s3m, legacy):
    key, data = legacy["large"]
    # The store's own answer about the parts (moto's GET ignores partNumber, which is refused, never served).
    head = s3m.head_object(Bucket=BUCKET, Key=key, PartNumber=2)
    assert head["ContentLength"] == PARTS[1] and head["PartsCount"] == 2
    small, small_data = legacy["multi-segment"]
    assert s3m.get_object(Bucket=BUCKET, Key=small, PartNumber=1)["Body"].read() == small_data
    etag = s3m.head_object(Bucket=BUCKET, Key=key)["ETag"]
    with pytest.raises(ClientError) as err:
        s3m.get_object(Bucket=BUCKET, Key=key, IfNoneMatch=etag)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    with pytest.raises(ClientError) as err:
        s3m.get_object(Bucket=BUCKET, Key=key, IfMatch='"0123456789abcdef0123456789abcdef"')
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert s3m.get_object(Bucket=BUCKET, Key=key, IfMatch=etag)["Body"].read() == data


def test_listings_show_stored_sizes_of_plaintext_objects_and_plaintext_sizes_of_encrypted_ones(s3m, legacy):
    prefix = legacy["empty"][0].rsplit("/", 1)[0] + "/"
    s3m.put_object(Bucket=BUCKET, Key=prefix + "written-through", Body=b"x" * 70_000)
    listed = {o["Key"]: o["Size"] for o in s3m.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]}
    assert listed == {**{key: len(data) for key, data in legacy.values()}, prefix + "written-through": 70_000}
    versions = s3m.list_object_versions(Bucket=BUCKET, Prefix=prefix)["Versions"]
    assert {v["Key"]: v["Size"] for v in versions} == listed


def test_the_same_objects_are_refused_where_the_bucket_is_not_opted_in(s3, s3m, legacy, stack):
    key, _ = legacy["multi-segment"]
    for client in (s3, s3m):  # the stack's own gateway, and the migrating one: the bucket is not opted in
        with pytest.raises(ClientError) as err:
            client.get_object(Bucket=stack.bucket, Key=key)
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


@pytest.mark.parametrize("metadata", [{"envelope-header": "not-base64!"}, {"envelope-key-0": "kms;arn;AAAA"},
                                      {"envelope-later-field": "x"}], ids=["bad-header", "key-only", "other-field"])
def test_objects_with_any_envelope_field_are_never_served_as_plaintext(s3m, store, metadata):
    key = f"damaged/{uuid.uuid4().hex}"
    store.put_object(Bucket=BUCKET, Key=key, Body=b"ciphertext, its envelope stripped", Metadata=metadata)
    with pytest.raises(ClientError) as err:
        s3m.get_object(Bucket=BUCKET, Key=key)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] in (403, 500)


def test_an_encrypted_object_with_its_envelope_damaged_is_refused(s3m, store):
    key = f"damaged/{uuid.uuid4().hex}"
    s3m.put_object(Bucket=BUCKET, Key=key, Body=os.urandom(1000))
    stored = store.get_object(Bucket=BUCKET, Key=key)
    metadata = {**stored["Metadata"], "envelope-header": stored["Metadata"]["envelope-header"][:-2]}
    store.put_object(Bucket=BUCKET, Key=key, Body=stored["Body"].read(), Metadata=metadata)
    with pytest.raises(ClientError) as err:
        s3m.get_object(Bucket=BUCKET, Key=key)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] >= 403


def test_writes_to_an_opted_in_bucket_are_encrypted(s3m, store):
    key, data = f"new/{uuid.uuid4().hex}", os.urandom(100_000)
    s3m.put_object(Bucket=BUCKET, Key=key, Body=data)
    stored = store.get_object(Bucket=BUCKET, Key=key)
    assert "envelope-header" in stored["Metadata"] and stored["Body"].read() != data
    assert s3m.get_object(Bucket=BUCKET, Key=key)["Body"].read() == data


def _assert_encrypted(store, s3m, key: str, data: bytes) -> dict:
    stored = store.get_object(Bucket=BUCKET, Key=key)
    assert "envelope-header" in stored["Metadata"] and "envelope-key-0" in stored["Metadata"]
    assert stored["Body"].read() != data
    got = s3m.get_object(Bucket=BUCKET, Key=key)
    assert got["Body"].read() == data and got["ServerSideEncryption"] == "aws:kms"
    return got


@pytest.mark.parametrize("name", ["one-byte", "large"])
def test_a_copy_of_a_plaintext_object_is_encrypted(s3m, store, legacy, name):
    key, data = legacy[name]
    target = f"copies/{uuid.uuid4().hex}"
    result = s3m.copy_object(Bucket=BUCKET, Key=target, CopySource={"Bucket": BUCKET, "Key": key})
    got = _assert_encrypted(store, s3m, target, data)
    assert got["ETag"] == result["CopyObjectResult"]["ETag"]
    assert got["ContentType"] == CONTENT_TYPE and got["Metadata"] == {"owner": "legacy-app"}
    assert store.get_object_tagging(Bucket=BUCKET, Key=target)["TagSet"] == [{"Key": "origin", "Value": "legacy"}]
    replaced = f"copies/{uuid.uuid4().hex}"
    s3m.copy_object(Bucket=BUCKET, Key=replaced, CopySource={"Bucket": BUCKET, "Key": key},
                    MetadataDirective="REPLACE", Metadata={"new": "yes"}, ContentType="text/plain")
    assert _assert_encrypted(store, s3m, replaced, data)["Metadata"] == {"new": "yes"}


def test_a_plaintext_object_copied_onto_itself_becomes_encrypted(s3m, store):
    key, data = f"self/{uuid.uuid4().hex}", os.urandom(3000)
    put_around(store, BUCKET, key, data)
    s3m.copy_object(Bucket=BUCKET, Key=key, CopySource={"Bucket": BUCKET, "Key": key})
    assert _assert_encrypted(store, s3m, key, data)["ContentType"] == CONTENT_TYPE


def test_an_upload_part_copy_of_a_plaintext_object_is_encrypted(s3m, store, legacy):
    key, data = legacy["large"]
    target = f"copies/{uuid.uuid4().hex}"
    upload = s3m.create_multipart_upload(Bucket=BUCKET, Key=target)["UploadId"]
    first = s3m.upload_part_copy(Bucket=BUCKET, Key=target, UploadId=upload, PartNumber=1,
                                 CopySource={"Bucket": BUCKET, "Key": key}, CopySourceRange=f"bytes=0-{6 * MiB - 1}")
    second = s3m.upload_part_copy(Bucket=BUCKET, Key=target, UploadId=upload, PartNumber=2,
                                  CopySource={"Bucket": BUCKET, "Key": key},
                                  CopySourceRange=f"bytes={6 * MiB}-{len(data) - 1}")
    s3m.complete_multipart_upload(Bucket=BUCKET, Key=target, UploadId=upload, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": first["CopyPartResult"]["ETag"]},
        {"PartNumber": 2, "ETag": second["CopyPartResult"]["ETag"]}]})
    _assert_encrypted(store, s3m, target, data)
