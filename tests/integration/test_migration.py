"""Migrating a bucket of objects written around the gateway, against moto server with real gateway processes: a
gateway with the bucket opted in (`migration.plaintext_read_buckets`) serves them as stored, flagged in its
metrics and audit log, while a damaged envelope is still refused and every write is encrypted; then
`envelope-gateway encrypt-existing` (a subprocess with only the store's and KMS's credentials) encrypts them in
place, and the gateway reads them back byte for byte."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from gateway.tools.encrypt_existing import Options
from gateway.tools.encrypt_existing import encrypt_existing as run_encrypt_existing
from tests.conftest import REGION, STORE_KEY_ID, STORE_SECRET, client_for, gateway_config, start_gateway, store_env
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


# --- encrypt-existing -----------------------------------------------------------------------------------------

BIN = Path(sys.executable).parent
PART = 5 * MiB  # --part-size in these tests: the large object (13 MiB) goes back in three parts


def encrypt_existing(stack, prefix: str, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    """The tool as an operator runs it: a subprocess with only the store's and KMS's credentials."""
    result = subprocess.run([str(BIN / "envelope-gateway"), "encrypt-existing", "--bucket", BUCKET, "--prefix",
                             prefix, "--kms-key-id", stack.key_arn, "--endpoint-url", stack.store_url,
                             "--part-size", "5MiB", "--concurrency", "2", *extra],
                            env=store_env(stack.store_url), capture_output=True, timeout=300)
    summary = json.loads(result.stdout) if result.stdout.strip() else {}
    return result, summary


def write_legacy(store, prefix: str) -> dict[str, bytes]:
    objects = {}
    for name, size in SIZES.items():
        key, data = f"{prefix}{name} ü.bin", os.urandom(size)
        put_around(store, BUCKET, key, data, PARTS if name == "large" else None)
        objects[key] = data
    return objects


@pytest.fixture(scope="module")
def migrated(stack, store) -> tuple[str, dict[str, bytes], dict, dict[str, dict]]:
    """A prefix of objects written around the gateway, then encrypt-existing run over it once."""
    prefix = f"migrate/{uuid.uuid4().hex}/"
    objects = write_legacy(store, prefix)
    before = {key: store.head_object(Bucket=BUCKET, Key=key) for key in objects}
    result, summary = encrypt_existing(stack, prefix)
    assert result.returncode == 0, result.stderr
    return prefix, objects, summary, before


def test_encrypt_existing_encrypts_in_place(migrated, store):
    prefix, objects, summary, before = migrated
    assert summary["encrypted"] == summary["kms_data_keys"] == len(objects) and summary["failed"] == 0
    assert summary["encrypted_bytes"] == sum(map(len, objects.values()))
    for key, data in objects.items():
        stored = store.get_object(Bucket=BUCKET, Key=key)
        body = stored["Body"].read()
        assert stored["Metadata"]["owner"] == "legacy-app" and stored["ContentType"] == CONTENT_TYPE
        assert "envelope-header" in stored["Metadata"] and "envelope-key-0" in stored["Metadata"]
        assert body != data and stored["ETag"] != before[key]["ETag"]
        assert store.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"] == [{"Key": "origin", "Value": "legacy"}]
    large = next(key for key in objects if "large" in key)
    assert store.head_object(Bucket=BUCKET, Key=large)["ETag"].endswith('-3"')  # the multipart layout, M = N


def test_after_encrypt_existing_any_gateway_reads_them_as_encrypted_objects(migrated, s3, s3m, mig_gateway):
    prefix, objects, _, _ = migrated
    before = metric(mig_gateway, "envelope_plaintext_reads_total")
    for client in (s3, s3m):  # the stack's gateway has no migration setting at all
        for key, data in objects.items():
            got = client.get_object(Bucket=BUCKET, Key=key)
            assert got["Body"].read() == data and got["ServerSideEncryption"] == "aws:kms"
            assert got["ContentType"] == CONTENT_TYPE and got["Metadata"] == {"owner": "legacy-app"}
            if data:
                ranged = client.get_object(Bucket=BUCKET, Key=key, Range=f"bytes={len(data) // 2}-")
                assert ranged["Body"].read() == data[len(data) // 2:]
        listed = {o["Key"]: o["Size"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]}
        assert listed == {key: len(data) for key, data in objects.items()}
    assert metric(mig_gateway, "envelope_plaintext_reads_total") == before


def test_after_encrypt_existing_the_offline_decrypt_reads_them(migrated, stack, tmp_path):
    _, objects, _, _ = migrated
    for key, data in objects.items():
        result = subprocess.run([str(BIN / "envelope-gateway"), "decrypt", "--bucket", BUCKET, "--key", key,
                                 "--endpoint-url", stack.store_url, "--out", str(tmp_path / "plain")],
                                env=store_env(stack.store_url), capture_output=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "plain").read_bytes() == data


def test_a_second_run_encrypts_nothing_and_calls_kms_for_nothing(migrated, stack, store):
    prefix, objects, _, _ = migrated
    etags = {key: store.head_object(Bucket=BUCKET, Key=key)["ETag"] for key in objects}
    result, summary = encrypt_existing(stack, prefix)
    assert result.returncode == 0, result.stderr
    assert (summary["encrypted"], summary["kms_data_keys"], summary["already_encrypted"]) == (0, 0, len(objects))
    assert {key: store.head_object(Bucket=BUCKET, Key=key)["ETag"] for key in objects} == etags


def test_dry_run_writes_nothing(stack, store):
    prefix = f"dry/{uuid.uuid4().hex}/"
    put_around(store, BUCKET, prefix + "a", b"plain")
    etag = store.head_object(Bucket=BUCKET, Key=prefix + "a")["ETag"]
    result, summary = encrypt_existing(stack, prefix, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert (summary["encrypted"], summary["encrypted_bytes"], summary["kms_data_keys"]) == (1, 5, 0)
    assert store.head_object(Bucket=BUCKET, Key=prefix + "a")["ETag"] == etag


def test_objects_with_a_damaged_envelope_are_left_alone(stack, store):
    prefix = f"damaged-skip/{uuid.uuid4().hex}/"
    store.put_object(Bucket=BUCKET, Key=prefix + "x", Body=b"not ours to touch", Metadata={"envelope-header": "?"})
    etag = store.head_object(Bucket=BUCKET, Key=prefix + "x")["ETag"]
    result, summary = encrypt_existing(stack, prefix)
    assert result.returncode == 0 and summary["already_encrypted"] == 1 and summary["kms_data_keys"] == 0
    assert store.head_object(Bucket=BUCKET, Key=prefix + "x")["ETag"] == etag


def test_a_kms_key_it_cannot_use_stops_the_run_and_writes_nothing(stack, store):
    prefix = f"nokey/{uuid.uuid4().hex}/"
    put_around(store, BUCKET, prefix + "a", b"plain")
    etag = store.head_object(Bucket=BUCKET, Key=prefix + "a")["ETag"]
    result = subprocess.run([str(BIN / "envelope-gateway"), "encrypt-existing", "--bucket", BUCKET, "--prefix",
                             prefix, "--kms-key-id", "alias/does-not-exist", "--endpoint-url", stack.store_url],
                            env=store_env(stack.store_url), capture_output=True, timeout=120)
    assert result.returncode == 4 and b"KMS" in result.stderr, result.stderr
    assert store.head_object(Bucket=BUCKET, Key=prefix + "a")["ETag"] == etag


def store_kms(stack):
    return boto3.client("kms", endpoint_url=stack.store_url, region_name=REGION, aws_access_key_id=STORE_KEY_ID,
                        aws_secret_access_key=STORE_SECRET)


class _Interfering:
    """The store client, except that one call first lets another writer overwrite the object."""

    def __init__(self, client, method: str, overwrite) -> None:
        self._client, self._method, self._overwrite = client, method, overwrite

    def __getattr__(self, name):
        method = getattr(self._client, name)
        if name != self._method or self._overwrite is None:
            return method

        def interfered(**params):
            overwrite, self._overwrite = self._overwrite, None
            overwrite()
            return method(**params)
        return interfered


# For a multipart write the overwrite comes during the parts: S3 checks If-Match at Complete, moto does not, and
# the tool's HEAD just before Complete catches it (only the moment between that HEAD and Complete stays open).
@pytest.mark.parametrize("name,method", [("one-byte", "put_object"), ("multi-segment", "get_object"),
                                         ("large", "upload_part")])
@pytest.mark.parametrize("writer", ["gateway", "around"])
def test_an_object_overwritten_meanwhile_is_not_clobbered(stack, store, s3m, name, method, writer):
    prefix = f"race/{uuid.uuid4().hex}/"
    key = prefix + name
    put_around(store, BUCKET, key, os.urandom(SIZES[name]), PARTS if name == "large" else None)
    newer = os.urandom(1000)

    def overwrite():
        (s3m if writer == "gateway" else store).put_object(Bucket=BUCKET, Key=key, Body=newer)

    options = Options(BUCKET, stack.key_arn, prefix, part_bytes=PART)
    summary = run_encrypt_existing(_Interfering(store, method, overwrite), store_kms(stack), options, io.StringIO())
    assert summary.failed == 0
    # The newer object survives: encrypted by the gateway (skipped on the second look), or encrypted in its turn.
    assert (summary.already_encrypted, summary.encrypted) == ((1, 0) if writer == "gateway" else (0, 1))
    assert "envelope-header" in store.head_object(Bucket=BUCKET, Key=key)["Metadata"]
    assert s3m.get_object(Bucket=BUCKET, Key=key)["Body"].read() == newer


def test_a_failure_mid_object_leaves_the_plaintext_object_and_no_upload(stack, store, s3m):
    prefix = f"fail/{uuid.uuid4().hex}/"
    key, data = prefix + "large", os.urandom(sum(PARTS))
    put_around(store, BUCKET, key, data, PARTS)
    etag = store.head_object(Bucket=BUCKET, Key=key)["ETag"]
    calls = []

    class Failing:
        def __getattr__(self, name):
            if name == "upload_part":
                def upload_part(**params):
                    calls.append(params["PartNumber"])
                    if len(calls) == 2:
                        raise ConnectionResetError("the network went away")
                    return store.upload_part(**params)
                return upload_part
            return getattr(store, name)

    summary = run_encrypt_existing(Failing(), store_kms(stack), Options(BUCKET, stack.key_arn, prefix, part_bytes=PART),
                                   io.StringIO())
    assert summary.failed == 1 and summary.failures[0]["key"] == key
    assert store.head_object(Bucket=BUCKET, Key=key)["ETag"] == etag
    assert s3m.get_object(Bucket=BUCKET, Key=key)["Body"].read() == data  # still served as plaintext
    assert not store.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads")


def test_an_interrupted_run_resumes_from_its_state_file(stack, store, s3m, tmp_path):
    prefix = f"resume/{uuid.uuid4().hex}/"
    big = os.urandom(24 * MiB)
    put_around(store, BUCKET, prefix + "0-big", big, [8 * MiB, 8 * MiB, 8 * MiB])
    small = {f"{prefix}{i}-small": os.urandom(1000 + i) for i in range(1, 4)}
    for key, data in small.items():
        put_around(store, BUCKET, key, data)
    etag = store.head_object(Bucket=BUCKET, Key=prefix + "0-big")["ETag"]
    state = tmp_path / "state.json"
    process = subprocess.Popen([str(BIN / "envelope-gateway"), "encrypt-existing", "--bucket", BUCKET, "--prefix",
                                prefix, "--kms-key-id", stack.key_arn, "--endpoint-url", stack.store_url,
                                "--part-size", "5MiB", "--concurrency", "1", "--state-file", str(state)],
                               env=store_env(stack.store_url), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (state.exists() and json.loads(state.read_text() or "{}").get("uploads")):
            assert process.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)  # mid-object: its multipart upload has started
    finally:
        process.wait()
    recorded = json.loads(state.read_text())["uploads"]
    assert list(recorded) == [prefix + "0-big"]
    assert store.head_object(Bucket=BUCKET, Key=prefix + "0-big")["ETag"] == etag  # untouched
    result, summary = encrypt_existing(stack, prefix, "--state-file", str(state))
    assert result.returncode == 0, result.stderr
    assert summary["failed"] == 0 and summary["encrypted"] + summary["already_encrypted"] == 4
    assert not state.exists()  # a finished run removes it
    assert not store.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads")  # the stale one aborted
    for key, data in {prefix + "0-big": big, **small}.items():
        assert "envelope-header" in store.head_object(Bucket=BUCKET, Key=key)["Metadata"]
        assert s3m.get_object(Bucket=BUCKET, Key=key)["Body"].read() == data
