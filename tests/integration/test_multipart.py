"""Multipart uploads through the gateway, against moto in server mode: any part size, any order, any replica."""
from __future__ import annotations

import concurrent.futures
import hashlib
import os
import http.client
import urllib.parse
import urllib.request
import uuid

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from gateway.format import multipart
from gateway.format.sizes import ciphertext_size
from gateway.proxy.uploadstate import RESERVED_KEY_PREFIX, upload_prefix
from tests.conftest import client_for, gateway_config, kms_calls, start_gateway, store_env

MiB = 1024 * 1024
ODD = 5_500_001  # no multiple of anything


def _key(prefix: str = "mpu") -> str:
    return f"{prefix}/{uuid.uuid4().hex}"


def _reserved_keys(store, bucket: str) -> list[str]:
    listing = store.list_objects_v2(Bucket=bucket, Prefix=RESERVED_KEY_PREFIX)
    return [entry["Key"] for entry in listing.get("Contents", [])]


def _upload(client, bucket: str, key: str, parts: list[tuple[int, bytes]], **create) -> dict:
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, **create)["UploadId"]
    done = [{"PartNumber": number, "ETag": client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id,
                                                               PartNumber=number, Body=data)["ETag"]}
            for number, data in parts]
    return client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                            MultipartUpload={"Parts": sorted(done, key=lambda p: p["PartNumber"])})


def _check_object(client, store, bucket: str, key: str, data: bytes, stored_parts: int) -> None:
    got = client.get_object(Bucket=bucket, Key=key)
    assert got["Body"].read() == data
    head = client.head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == got["ContentLength"] == len(data)
    listed = client.list_objects_v2(Bucket=bucket, Prefix=key)["Contents"]
    assert [(e["Key"], e["Size"]) for e in listed] == [(key, len(data))]
    assert listed[0]["ETag"] == head["ETag"] == got["ETag"]
    assert head["ETag"].strip('"').endswith(f"-{stored_parts}")
    stored = store.head_object(Bucket=bucket, Key=key)
    assert stored["ContentLength"] == multipart.stored_size(len(data), stored_parts)


@pytest.mark.parametrize("last_part", [0, 1, 3 * MiB, 5 * MiB + 3])
def test_upload_file_round_trip(s3_any, stack, store, tmp_path, last_part):
    """boto3's managed transfer (parallel parts) for layouts whose last part is small, empty-ish, or big."""
    data = os.urandom(2 * 5 * MiB + last_part)
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    key = _key()
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=4)
    s3_any.upload_file(str(source), stack.bucket, key, Config=config)
    parts = 2 + (1 if last_part else 0)
    # A last part under 5 MiB carries the part table (M = N); otherwise the table is a part of its own.
    stored_parts = parts if last_part < 5 * MiB and last_part else parts + 1
    _check_object(s3_any, store, stack.bucket, key, data, stored_parts)
    target = tmp_path / "back.bin"
    s3_any.download_file(stack.bucket, key, str(target), Config=config)
    assert target.read_bytes() == data
    assert _reserved_keys(store, stack.bucket) == []


def test_odd_part_sizes_out_of_order_in_parallel(s3, stack, store):
    key = _key()
    chunks = [os.urandom(ODD), os.urandom(ODD), os.urandom(12345)]
    upload_id = s3.create_multipart_upload(Bucket=stack.bucket, Key=key)["UploadId"]

    def send(number: int) -> dict:
        response = s3.upload_part(Bucket=stack.bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                  Body=chunks[number - 1])
        return {"PartNumber": number, "ETag": response["ETag"]}

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        done = list(pool.map(send, [3, 1, 2]))
    listed = s3.list_parts(Bucket=stack.bucket, Key=key, UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in listed] == [(1, ODD), (2, ODD), (3, 12345)]
    assert {p["PartNumber"]: p["ETag"] for p in listed} == {p["PartNumber"]: p["ETag"] for p in done}
    uploads = s3.list_multipart_uploads(Bucket=stack.bucket, Prefix=key)["Uploads"]
    assert [u["UploadId"] for u in uploads] == [upload_id]
    # In progress, the gateway's records exist in the store but not in any client listing.
    assert _reserved_keys(store, stack.bucket)
    assert all(not e["Key"].startswith(RESERVED_KEY_PREFIX)
               for e in s3.list_objects_v2(Bucket=stack.bucket).get("Contents", []))
    s3.complete_multipart_upload(Bucket=stack.bucket, Key=key, UploadId=upload_id,
                                 MultipartUpload={"Parts": sorted(done, key=lambda p: p["PartNumber"])})
    _check_object(s3, store, stack.bucket, key, b"".join(chunks), 3)
    assert _reserved_keys(store, stack.bucket) == []


def test_reuploaded_part_with_other_bytes(s3, stack, store):
    key = _key()
    first, second, tail = os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(100)
    upload_id = s3.create_multipart_upload(Bucket=stack.bucket, Key=key)["UploadId"]
    old = s3.upload_part(Bucket=stack.bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=first)["ETag"]
    new = s3.upload_part(Bucket=stack.bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=second)["ETag"]
    assert old != new
    last = s3.upload_part(Bucket=stack.bucket, Key=key, UploadId=upload_id, PartNumber=2, Body=tail)["ETag"]
    with pytest.raises(ClientError) as stale:
        s3.complete_multipart_upload(Bucket=stack.bucket, Key=key, UploadId=upload_id, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": old}, {"PartNumber": 2, "ETag": last}]})
    assert stale.value.response["Error"]["Code"] == "InvalidPart"
    s3.complete_multipart_upload(Bucket=stack.bucket, Key=key, UploadId=upload_id, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": new}, {"PartNumber": 2, "ETag": last}]})
    assert s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == second + tail


def test_upload_spread_over_two_gateways(s3, s3_tls, stack, store):
    """Parts through two gateway processes (no shared memory), Complete through the one that did not create."""
    key = _key()
    chunks = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(7)]
    upload_id = s3.create_multipart_upload(Bucket=stack.bucket, Key=key)["UploadId"]
    done = []
    for number, (client, chunk) in enumerate(zip([s3_tls, s3, s3_tls], chunks), start=1):
        etag = client.upload_part(Bucket=stack.bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                  Body=chunk)["ETag"]
        done.append({"PartNumber": number, "ETag": etag})
    s3_tls.complete_multipart_upload(Bucket=stack.bucket, Key=key, UploadId=upload_id,
                                     MultipartUpload={"Parts": done})
    _check_object(s3, store, stack.bucket, key, b"".join(chunks), 3)


def test_abort_cleans_up(s3, stack, store):
    key = _key()
    upload_id = s3.create_multipart_upload(Bucket=stack.bucket, Key=key)["UploadId"]
    s3.upload_part(Bucket=stack.bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=os.urandom(5 * MiB))
    s3.upload_part(Bucket=stack.bucket, Key=key, UploadId=upload_id, PartNumber=2, Body=b"small")
    assert _reserved_keys(store, stack.bucket)
    s3.abort_multipart_upload(Bucket=stack.bucket, Key=key, UploadId=upload_id)
    assert _reserved_keys(store, stack.bucket) == []
    assert not s3.list_multipart_uploads(Bucket=stack.bucket, Prefix=key).get("Uploads")
    with pytest.raises(ClientError) as gone:
        s3.upload_part(Bucket=stack.bucket, Key=key, UploadId=upload_id, PartNumber=3, Body=b"x")
    assert gone.value.response["Error"]["Code"] == "NoSuchUpload"


def test_small_part_before_the_last_is_entity_too_small(s3, stack, store):
    key = _key()
    upload_id = s3.create_multipart_upload(Bucket=stack.bucket, Key=key)["UploadId"]
    parts = [{"PartNumber": n, "ETag": s3.upload_part(Bucket=stack.bucket, Key=key, UploadId=upload_id,
                                                      PartNumber=n, Body=os.urandom(size))["ETag"]}
             for n, size in ((1, 5 * MiB - 1), (2, 10))]
    with pytest.raises(ClientError) as small:
        s3.complete_multipart_upload(Bucket=stack.bucket, Key=key, UploadId=upload_id,
                                     MultipartUpload={"Parts": parts})
    assert small.value.response["Error"]["Code"] == "EntityTooSmall"
    s3.abort_multipart_upload(Bucket=stack.bucket, Key=key, UploadId=upload_id)


def test_reserved_keys_are_not_for_clients(s3, stack, store):
    for call in (lambda: s3.get_object(Bucket=stack.bucket, Key=RESERVED_KEY_PREFIX + "uploads/x/state"),
                 lambda: s3.put_object(Bucket=stack.bucket, Key=RESERVED_KEY_PREFIX + "planted", Body=b"x")):
        with pytest.raises(ClientError) as denied:
            call()
        assert denied.value.response["Error"]["Code"] == "AccessDenied"


@pytest.fixture(scope="module")
def spanning(s3, stack, store):
    """Parts of 5,500,001 + 5,500,001 + 300,000 bytes: boundaries inside segments."""
    key = _key("ranges")
    data = os.urandom(2 * ODD + 300_000)
    _upload(s3, stack.bucket, key, [(1, data[:ODD]), (2, data[ODD:2 * ODD]), (3, data[2 * ODD:])])
    return key, data


@pytest.mark.parametrize("first,last", [(0, 0), (ODD - 10, ODD + 10), (ODD - 1, ODD), (ODD - 70_000, 2 * ODD + 5),
                                        (2 * ODD, 2 * ODD + 299_999), (65_536 * 84, 65_536 * 84 + 1)])
def test_ranges_across_part_boundaries(s3, stack, spanning, first, last):
    key, data = spanning
    got = s3.get_object(Bucket=stack.bucket, Key=key, Range=f"bytes={first}-{last}")
    assert got["Body"].read() == data[first:last + 1]
    assert got["ContentRange"] == f"bytes {first}-{last}/{len(data)}"


def test_suffix_and_open_ranges(s3, stack, spanning):
    key, data = spanning
    assert s3.get_object(Bucket=stack.bucket, Key=key, Range="bytes=-400000")["Body"].read() == data[-400000:]
    assert s3.get_object(Bucket=stack.bucket, Key=key, Range=f"bytes={ODD}-")["Body"].read() == data[ODD:]
    with pytest.raises(ClientError) as bad:
        s3.get_object(Bucket=stack.bucket, Key=key, Range=f"bytes={len(data)}-")
    assert bad.value.response["Error"]["Code"] == "InvalidRange"


def test_part_number_get_and_head(s3, stack, spanning):
    key, data = spanning
    for number, (start, end) in enumerate([(0, ODD - 1), (ODD, 2 * ODD - 1), (2 * ODD, len(data) - 1)], start=1):
        got = s3.get_object(Bucket=stack.bucket, Key=key, PartNumber=number)
        assert got["Body"].read() == data[start:end + 1]
        assert got["PartsCount"] == 3
        assert got["ContentRange"] == f"bytes {start}-{end}/{len(data)}"
        head = s3.head_object(Bucket=stack.bucket, Key=key, PartNumber=number)
        assert head["ContentLength"] == end - start + 1 and head["PartsCount"] == 3
    with pytest.raises(ClientError) as missing:
        s3.get_object(Bucket=stack.bucket, Key=key, PartNumber=4)
    assert missing.value.response["Error"]["Code"] == "InvalidPartNumber"


def _stored(store, bucket: str, key: str) -> tuple[bytes, dict]:
    got = store.get_object(Bucket=bucket, Key=key)
    return got["Body"].read(), got["Metadata"]


def _restore(store, bucket: str, key: str, body: bytes, metadata: dict, boundaries: list[int]) -> None:
    """Write a (tampered) body straight into the store, keeping the part boundaries and so the `-M` ETag."""
    upload_id = store.create_multipart_upload(Bucket=bucket, Key=key, Metadata=metadata)["UploadId"]
    parts, offset = [], 0
    for number, size in enumerate(boundaries, start=1):
        etag = store.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                 Body=body[offset:offset + size])["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
        offset += size
    store.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})


def _assert_read_fails(s3, bucket: str, key: str) -> None:
    with pytest.raises(Exception) as failed:  # a 5xx, or a transfer broken after the status line
        s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    if isinstance(failed.value, ClientError):
        assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] >= 500


def _three_parts(s3, stack, store) -> tuple[str, list[bytes], bytes, dict, int]:
    """An object of two 5 MiB parts and a short one: its key, plaintext parts, stored body and metadata, and the
    stored size of a full part."""
    key = _key("tamper")
    chunks = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(10)]
    _upload(s3, stack.bucket, key, list(enumerate(chunks, start=1)))
    body, metadata = _stored(store, stack.bucket, key)
    return key, chunks, body, metadata, ciphertext_size(5 * MiB)


def test_swapped_parts_fail_on_read(s3, stack, store):
    key, _, body, metadata, part = _three_parts(s3, stack, store)
    swapped = body[part:2 * part] + body[:part] + body[2 * part:]
    _restore(store, stack.bucket, key, swapped, metadata, [part, part, len(body) - 2 * part])
    _assert_read_fails(s3, stack.bucket, key)


def test_truncated_part_fails_on_read(s3, stack, store):
    key, chunks, body, metadata, part = _three_parts(s3, stack, store)
    # Drop part 1's last segment, and grow the trailer's zero padding so the stored size still looks right.
    cut = body[:part - 65_552] + body[part:]
    table_at = len(cut) - multipart.table_tail_size(3)
    cut = cut[:table_at] + bytes(65_552) + cut[table_at:]
    assert len(cut) == len(body)
    _restore(store, stack.bucket, key, cut, metadata, [part, part, len(cut) - 2 * part])
    _assert_read_fails(s3, stack.bucket, key)
    got = s3.get_object(Bucket=stack.bucket, Key=key, Range="bytes=0-10")  # part 1's start is still genuine
    assert got["Body"].read() == chunks[0][:11]


def test_big_file_with_aws_cli(stack, tmp_path):
    from tests.integration.test_cli import _aws
    data = os.urandom(100 * MiB + 12_345)
    source, target = tmp_path / "big.bin", tmp_path / "back.bin"
    source.write_bytes(data)
    key = f"cli/{uuid.uuid4().hex}/big.bin"
    result = _aws(stack, "s3", "cp", str(source), f"s3://{stack.bucket}/{key}")
    assert result.returncode == 0, result.stderr
    listing = _aws(stack, "s3", "ls", f"s3://{stack.bucket}/{key}")
    assert f" {len(data)} " in listing.stdout, listing.stdout
    result = _aws(stack, "s3", "cp", f"s3://{stack.bucket}/{key}", str(target))
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(data).digest()


# --- copies ---------------------------------------------------------------------------------------
def test_copy_object_rewraps_and_keeps_the_bytes(s3, stack, store):
    source, target = _key("copy"), _key("copy")
    data = os.urandom(300_000)
    put = s3.put_object(Bucket=stack.bucket, Key=source, Body=data, ContentType="text/x-test",
                        Metadata={"colour": "blue"})
    copied = s3.copy_object(Bucket=stack.bucket, Key=target, CopySource={"Bucket": stack.bucket, "Key": source})
    assert copied["CopyObjectResult"]["ETag"] == put["ETag"]  # the same bytes in the store: the same ETag
    got = s3.get_object(Bucket=stack.bucket, Key=target)
    assert got["Body"].read() == data
    assert got["ContentType"] == "text/x-test" and got["Metadata"] == {"colour": "blue"}
    # The store holds the same ciphertext under a DEK wrapped for the new name.
    stored_source, stored_target = (store.get_object(Bucket=stack.bucket, Key=k) for k in (source, target))
    assert stored_source["Body"].read() == stored_target["Body"].read()
    assert stored_source["Metadata"]["envelope-header"] == stored_target["Metadata"]["envelope-header"]
    assert stored_source["Metadata"]["envelope-key-0"] != stored_target["Metadata"]["envelope-key-0"]
    replaced = _key("copy")
    s3.copy_object(Bucket=stack.bucket, Key=replaced, CopySource={"Bucket": stack.bucket, "Key": source},
                   MetadataDirective="REPLACE", Metadata={"shape": "round"}, ContentType="text/plain")
    head = s3.head_object(Bucket=stack.bucket, Key=replaced)
    assert head["Metadata"] == {"shape": "round"} and head["ContentType"] == "text/plain"
    assert s3.get_object(Bucket=stack.bucket, Key=replaced)["Body"].read() == data


def test_copy_object_errors(s3, stack):
    key = _key("copy")
    s3.put_object(Bucket=stack.bucket, Key=key, Body=b"x")
    cases = [
        (dict(Key=key, CopySource={"Bucket": stack.bucket, "Key": key}), "InvalidRequest"),
        (dict(Key=_key(), CopySource={"Bucket": stack.bucket, "Key": key + "-missing"}), "NoSuchKey"),
        (dict(Key=_key(), CopySource={"Bucket": stack.bucket, "Key": key}, CopySourceIfMatch='"0123"'),
         "PreconditionFailed"),
    ]
    for arguments, code in cases:
        with pytest.raises(ClientError) as failed:
            s3.copy_object(Bucket=stack.bucket, **arguments)
        assert failed.value.response["Error"]["Code"] == code
    s3.copy_object(Bucket=stack.bucket, Key=key, CopySource={"Bucket": stack.bucket, "Key": key},
                   MetadataDirective="REPLACE", Metadata={"now": "changed"})
    assert s3.head_object(Bucket=stack.bucket, Key=key)["Metadata"] == {"now": "changed"}
    assert s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == b"x"


def test_copy_of_a_multipart_object_keeps_its_etag(s3, stack, store, spanning):
    key, data = spanning
    target = _key("copy")
    source_etag = s3.head_object(Bucket=stack.bucket, Key=key)["ETag"]
    copied = s3.copy_object(Bucket=stack.bucket, Key=target, CopySource={"Bucket": stack.bucket, "Key": key})
    assert copied["CopyObjectResult"]["ETag"] == source_etag
    _check_object(s3, store, stack.bucket, target, data, 3)
    got = s3.get_object(Bucket=stack.bucket, Key=target, Range=f"bytes={ODD - 5}-{ODD + 5}")
    assert got["Body"].read() == data[ODD - 5:ODD + 6]


def test_upload_part_copy_with_and_without_range(s3, stack, store, spanning):
    key, data = spanning
    small = _key("copy")
    s3.put_object(Bucket=stack.bucket, Key=small, Body=b"tail bytes")
    target = _key("copy")
    upload_id = s3.create_multipart_upload(Bucket=stack.bucket, Key=target)["UploadId"]
    first = s3.upload_part_copy(Bucket=stack.bucket, Key=target, UploadId=upload_id, PartNumber=1,
                                CopySource={"Bucket": stack.bucket, "Key": key},
                                CopySourceRange=f"bytes=100-{100 + ODD - 1}")
    second = s3.upload_part_copy(Bucket=stack.bucket, Key=target, UploadId=upload_id, PartNumber=2,
                                 CopySource={"Bucket": stack.bucket, "Key": small})
    for copy_range in ("bytes=5-50", "bytes=10-10"):
        with pytest.raises(ClientError) as outside:
            s3.upload_part_copy(Bucket=stack.bucket, Key=target, UploadId=upload_id, PartNumber=3,
                                CopySource={"Bucket": stack.bucket, "Key": small}, CopySourceRange=copy_range)
        assert outside.value.response["Error"]["Code"] == "InvalidRange"
    s3.complete_multipart_upload(Bucket=stack.bucket, Key=target, UploadId=upload_id, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": first["CopyPartResult"]["ETag"]},
        {"PartNumber": 2, "ETag": second["CopyPartResult"]["ETag"]}]})
    _check_object(s3, store, stack.bucket, target, data[100:100 + ODD] + b"tail bytes", 2)


def test_managed_copy_uses_part_copies(s3, stack, store, spanning):
    """boto3's s3.copy: a multipart copy of plaintext ranges (UploadPartCopy), through the gateway."""
    key, data = spanning
    target = _key("copy")
    s3.copy({"Bucket": stack.bucket, "Key": key}, stack.bucket, target,
            Config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=3))
    assert s3.get_object(Bucket=stack.bucket, Key=target)["Body"].read() == data
    assert _reserved_keys(store, stack.bucket) == []


def test_delete_bucket_with_an_abandoned_upload(s3, stack, store):
    """Only the gateway's records of an unfinished upload are left: the bucket looks empty, so it deletes."""
    bucket = f"abandoned-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    key = _key()
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"abandoned")
    assert _reserved_keys(store, bucket) and s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    s3.delete_bucket(Bucket=bucket)
    assert bucket not in [b["Name"] for b in store.list_buckets()["Buckets"]]


def test_delete_bucket_with_objects_is_still_not_empty(s3, stack, store):
    bucket = f"busy-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    key = _key()
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    s3.put_object(Bucket=bucket, Key="zzz-after-the-records", Body=b"x")
    with pytest.raises(ClientError) as busy:
        s3.delete_bucket(Bucket=bucket)
    assert busy.value.response["Error"]["Code"] == "BucketNotEmpty"
    # The unfinished upload was left alone: it can still finish.
    etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"late")["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"late"


@pytest.mark.parametrize("multipart_write", [False, True])
def test_conditional_writes(s3, stack, multipart_write):
    key = _key("conditional")

    def write(body: bytes, **conditions) -> None:
        if not multipart_write:
            s3.put_object(Bucket=stack.bucket, Key=key, Body=body, **conditions)
            return
        upload_id = s3.create_multipart_upload(Bucket=stack.bucket, Key=key)["UploadId"]
        etag = s3.upload_part(Bucket=stack.bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=body)["ETag"]
        try:
            s3.complete_multipart_upload(Bucket=stack.bucket, Key=key, UploadId=upload_id, **conditions,
                                         MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
        except ClientError:
            # As in S3, an upload whose conditional Complete failed is still there: the client aborts it.
            s3.abort_multipart_upload(Bucket=stack.bucket, Key=key, UploadId=upload_id)
            raise

    write(b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as exists:
        write(b"second", IfNoneMatch="*")
    assert exists.value.response["Error"]["Code"] == "PreconditionFailed"
    current = s3.head_object(Bucket=stack.bucket, Key=key)["ETag"]
    with pytest.raises(ClientError) as stale:
        write(b"third", IfMatch='"00000000000000000000000000000000"')
    assert stale.value.response["Error"]["Code"] == "PreconditionFailed"
    write(b"fourth", IfMatch=current)
    assert s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == b"fourth"


def test_a_fresh_gateway_finishes_an_upload(s3, stack, store, tmp_path):
    """A gateway process that did not exist when the upload began (a restart, a new replica) completes it."""
    key = _key()
    chunks = [os.urandom(5 * MiB), os.urandom(33)]
    upload_id = s3.create_multipart_upload(Bucket=stack.bucket, Key=key)["UploadId"]
    first = s3.upload_part(Bucket=stack.bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=chunks[0])["ETag"]
    fresh = start_gateway(tmp_path, "fresh", gateway_config(stack.store_url, stack.key_arn, stack.access_key_id,
                                                            stack.secret_access_key), store_env(stack.store_url))
    try:
        client = client_for(stack, fresh.url)
        second = client.upload_part(Bucket=stack.bucket, Key=key, UploadId=upload_id, PartNumber=2,
                                    Body=chunks[1])["ETag"]
        client.complete_multipart_upload(Bucket=stack.bucket, Key=key, UploadId=upload_id, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": first}, {"PartNumber": 2, "ETag": second}]})
    finally:
        fresh.stop()
    _check_object(s3, store, stack.bucket, key, b"".join(chunks), 2)


def test_delete_objects_cannot_reach_the_records(s3, stack, store):
    key = _key()
    upload_id = s3.create_multipart_upload(Bucket=stack.bucket, Key=key)["UploadId"]
    records = _reserved_keys(store, stack.bucket)
    with pytest.raises(ClientError) as denied:
        s3.delete_objects(Bucket=stack.bucket, Delete={"Objects": [{"Key": records[0]}, {"Key": "innocent"}]})
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    assert _reserved_keys(store, stack.bucket) == records
    s3.abort_multipart_upload(Bucket=stack.bucket, Key=key, UploadId=upload_id)


def _kms_calls(stack) -> dict[str, float]:
    return kms_calls(stack.http.admin_url)


def test_kms_stays_out_of_the_part_path(s3, stack):
    """One GenerateDataKey per upload and no KMS call per part: the parts use the upload's data key, cached when
    CreateMultipartUpload generated it (a gateway that did not create the upload makes one Decrypt for all)."""
    key = _key()
    before = _kms_calls(stack)
    upload_id = s3.create_multipart_upload(Bucket=stack.bucket, Key=key)["UploadId"]
    parts = [{"PartNumber": n, "ETag": s3.upload_part(Bucket=stack.bucket, Key=key, UploadId=upload_id, PartNumber=n,
                                                      Body=os.urandom(5 * MiB if n < 4 else 10))["ETag"]}
             for n in range(1, 5)]
    s3.complete_multipart_upload(Bucket=stack.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
    after = _kms_calls(stack)
    assert after.get("GenerateDataKey", 0) - before.get("GenerateDataKey", 0) == 1
    assert after.get("Decrypt", 0) - before.get("Decrypt", 0) == 0


@pytest.mark.parametrize("part_number, size", [(1, 5_367_398_705), (10_000, 5_366_798_741)])
def test_a_part_too_large_for_its_ciphertext_is_refused_before_its_body(s3, stack, part_number, size):
    """5 GiB of plaintext would be 5 GiB + 1.25 MiB stored: refused clearly, before a byte of the body is sent."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    key = _key()
    upload_id = s3.create_multipart_upload(Bucket=stack.bucket, Key=key)["UploadId"]
    port = int(stack.http.url.rsplit(":", 1)[1])
    path = f"/{stack.bucket}/{key}?partNumber={part_number}&uploadId={urllib.parse.quote(upload_id, safe='')}"
    request = AWSRequest("PUT", f"http://127.0.0.1:{port}{path}",
                         headers={"Content-Length": str(size), "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
                                  "Expect": "100-continue"})
    S3SigV4Auth(Credentials(stack.access_key_id, stack.secret_access_key), "s3", "us-east-1").add_auth(request)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.putrequest("PUT", path, skip_host=True, skip_accept_encoding=True)
    for name, value in [("Host", f"127.0.0.1:{port}"), *request.headers.items()]:
        connection.putheader(name, value)
    connection.endheaders()
    response = connection.getresponse()  # no body sent: the answer comes on the headers alone
    body = response.read()
    assert response.status == 400 and b"<Code>EntityTooLarge</Code>" in body
    s3.abort_multipart_upload(Bucket=stack.bucket, Key=key, UploadId=upload_id)


def test_a_repeated_complete_succeeds_again(s3, stack, store):
    """A client that retries CompleteMultipartUpload after a lost response gets the result again, as from S3;
    a Complete naming other parts, or for an upload that was aborted, stays NoSuchUpload."""
    key = _key()
    upload_id = s3.create_multipart_upload(Bucket=stack.bucket, Key=key)["UploadId"]
    parts = [{"PartNumber": n, "ETag": s3.upload_part(Bucket=stack.bucket, Key=key, UploadId=upload_id,
                                                      PartNumber=n, Body=os.urandom(5 * MiB if n == 1 else 9))["ETag"]}
             for n in (1, 2)]
    first = s3.complete_multipart_upload(Bucket=stack.bucket, Key=key, UploadId=upload_id,
                                         MultipartUpload={"Parts": parts})
    again = s3.complete_multipart_upload(Bucket=stack.bucket, Key=key, UploadId=upload_id,
                                         MultipartUpload={"Parts": parts})
    assert again["ETag"] == first["ETag"] == s3.head_object(Bucket=stack.bucket, Key=key)["ETag"]
    with pytest.raises(ClientError) as other:
        s3.complete_multipart_upload(Bucket=stack.bucket, Key=key, UploadId=upload_id,
                                     MultipartUpload={"Parts": parts[:1]})
    assert other.value.response["Error"]["Code"] == "NoSuchUpload"
    aborted = s3.create_multipart_upload(Bucket=stack.bucket, Key=key)["UploadId"]
    s3.abort_multipart_upload(Bucket=stack.bucket, Key=key, UploadId=aborted)
    with pytest.raises(ClientError) as gone:
        s3.complete_multipart_upload(Bucket=stack.bucket, Key=key, UploadId=aborted,
                                     MultipartUpload={"Parts": [{"PartNumber": 9, "ETag": parts[0]["ETag"]}]})
    assert gone.value.response["Error"]["Code"] == "NoSuchUpload"


def _upstream_gets(stack) -> float:
    text = urllib.request.urlopen(stack.http.admin_url + "/metrics", timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith('envelope_upstream_requests_total{method="GET"'))


def test_ranged_reads_of_a_multipart_object_reuse_its_part_table(s3, stack, store):
    """The first ranged read fetches the part table; the next ones cost one upstream request each, and a
    replaced object is noticed (the cached table is pinned to the ETag it was read under)."""
    key = _key("ranges")
    data = os.urandom(ODD + 1000)
    _upload(s3, stack.bucket, key, [(1, data[:ODD]), (2, data[ODD:])])
    assert s3.get_object(Bucket=stack.bucket, Key=key, Range="bytes=10-20")["Body"].read() == data[10:21]
    before = _upstream_gets(stack)
    for first in (ODD - 5, 70_000, 3):
        got = s3.get_object(Bucket=stack.bucket, Key=key, Range=f"bytes={first}-{first + 99}")
        assert got["Body"].read() == data[first:first + 100]
    assert _upstream_gets(stack) - before == 3
    replaced = os.urandom(ODD + 2000)
    _upload(s3, stack.bucket, key, [(1, replaced[:ODD]), (2, replaced[ODD:])])
    got = s3.get_object(Bucket=stack.bucket, Key=key, Range=f"bytes={ODD}-{ODD + 1999}")
    assert got["Body"].read() == replaced[ODD:]
    assert got["ContentRange"] == f"bytes {ODD}-{ODD + 1999}/{len(replaced)}"
    assert s3.get_object(Bucket=stack.bucket, Key=key, PartNumber=2)["Body"].read() == replaced[ODD:]


@pytest.mark.parametrize("body", [b"", b"x"])
def test_a_single_tiny_part(s3, stack, store, body):
    """An upload of one empty (or one-byte) part: the part is stashed and completed with the table appended."""
    key = _key()
    _upload(s3, stack.bucket, key, [(1, body)])
    _check_object(s3, store, stack.bucket, key, body, 1)
    if body:
        assert s3.get_object(Bucket=stack.bucket, Key=key, Range="bytes=0-0")["Body"].read() == body
    assert s3.get_object(Bucket=stack.bucket, Key=key, PartNumber=1)["Body"].read() == body


def test_a_small_part_for_an_upload_aborted_elsewhere_leaves_nothing(s3, s3_tls, stack, store):
    """The HTTP gateway still has the upload's keys cached when the TLS one aborts it: its next (stashed) part
    is refused with NoSuchUpload, and the stash it wrote first is deleted again."""
    key = _key()
    upload_id = s3.create_multipart_upload(Bucket=stack.bucket, Key=key)["UploadId"]
    s3.upload_part(Bucket=stack.bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=os.urandom(5 * MiB))
    s3_tls.abort_multipart_upload(Bucket=stack.bucket, Key=key, UploadId=upload_id)
    with pytest.raises(ClientError) as gone:
        s3.upload_part(Bucket=stack.bucket, Key=key, UploadId=upload_id, PartNumber=2, Body=b"late and small")
    assert gone.value.response["Error"]["Code"] == "NoSuchUpload"
    assert not store.list_objects_v2(Bucket=stack.bucket, Prefix=upload_prefix(upload_id)).get("Contents")


def test_mp_object_size_is_checked_against_the_plaintext(s3, stack):
    key = _key()
    upload_id = s3.create_multipart_upload(Bucket=stack.bucket, Key=key)["UploadId"]
    etag = s3.upload_part(Bucket=stack.bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"12345")["ETag"]
    parts = {"Parts": [{"PartNumber": 1, "ETag": etag}]}
    with pytest.raises(ClientError) as wrong:
        s3.complete_multipart_upload(Bucket=stack.bucket, Key=key, UploadId=upload_id, MultipartUpload=parts,
                                     MpuObjectSize=6)
    assert wrong.value.response["Error"]["Code"] == "InvalidRequest"
    s3.complete_multipart_upload(Bucket=stack.bucket, Key=key, UploadId=upload_id, MultipartUpload=parts,
                                 MpuObjectSize=5)
    assert s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == b"12345"
