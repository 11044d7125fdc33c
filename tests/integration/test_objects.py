"""PutObject / GetObject / HeadObject / listings through the gateway, against moto in server mode."""
from __future__ import annotations

import hashlib
import http.client
import os
import uuid

import pytest
from botocore.exceptions import ClientError

from gateway.format.sizes import SEGMENT_SIZE_BYTES, ciphertext_size

S = SEGMENT_SIZE_BYTES
SIZES = [0, 1, S - 1, S, S + 1, 3 * S + 17]


def _key(prefix: str = "obj") -> str:
    return f"{prefix}/{uuid.uuid4().hex}"


def _data(size: int) -> bytes:
    return os.urandom(size)


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_is_byte_identical(s3_any, stack, store, size):
    key, data = _key(), _data(size)
    put = s3_any.put_object(Bucket=stack.bucket, Key=key, Body=data)
    got = s3_any.get_object(Bucket=stack.bucket, Key=key)
    assert got["Body"].read() == data
    assert got["ContentLength"] == size
    head = s3_any.head_object(Bucket=stack.bucket, Key=key)
    assert head["ContentLength"] == size
    # One ETag everywhere (the store's), and the SSE-KMS signal that tells clients it is not the MD5.
    assert put["ETag"] == got["ETag"] == head["ETag"]
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == stack.key_arn
    stored = store.head_object(Bucket=stack.bucket, Key=key)
    assert stored["ContentLength"] == ciphertext_size(size)


def test_stored_object_is_ciphertext_with_wrapped_key(s3, stack, store):
    key = _key("secret")
    marker = b"PLAINTEXT-MARKER-" + uuid.uuid4().hex.encode()
    data = marker * 5000
    s3.put_object(Bucket=stack.bucket, Key=key, Body=data, Metadata={"owner": "alice"})
    raw = store.get_object(Bucket=stack.bucket, Key=key)
    stored = raw["Body"].read()
    assert marker not in stored and marker[:8] not in stored
    assert len(stored) == ciphertext_size(len(data))
    meta = raw["Metadata"]
    assert meta["owner"] == "alice"
    assert "envelope-header" in meta and meta["envelope-key-0"].startswith("kms;")
    # The client sees its own metadata, never the gateway's.
    assert s3.head_object(Bucket=stack.bucket, Key=key)["Metadata"] == {"owner": "alice"}


def test_clients_cannot_set_reserved_metadata(s3, stack):
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=stack.bucket, Key=_key(), Body=b"x", Metadata={"envelope-header": "forged"})
    assert err.value.response["Error"]["Code"] == "InvalidArgument"


@pytest.mark.slow
@pytest.mark.parametrize("client", ["s3", "s3_tls"])
def test_large_object_round_trip(request, client, stack):
    s3 = request.getfixturevalue(client)
    size = 50 * 1024 * 1024 + 12345
    data = _data(size)
    key = _key("large")
    s3.put_object(Bucket=stack.bucket, Key=key, Body=data)
    body = s3.get_object(Bucket=stack.bucket, Key=key)["Body"]
    digest = hashlib.sha256()
    for chunk in iter(lambda: body.read(1 << 20), b""):
        digest.update(chunk)
    assert digest.digest() == hashlib.sha256(data).digest()
    part = s3.get_object(Bucket=stack.bucket, Key=key, Range=f"bytes={size - 3 * S - 5}-{size - 2}")["Body"].read()
    assert part == data[size - 3 * S - 5:size - 1]


@pytest.fixture(scope="module")
def ranged_object(s3, stack):
    data = _data(3 * S + 100)
    key = _key("ranged")
    s3.put_object(Bucket=stack.bucket, Key=key, Body=data)
    return key, data


RANGES = [
    ("bytes=0-0", 0, 0), ("bytes=0-9", 0, 9), (f"bytes={S - 1}-{S}", S - 1, S), (f"bytes={S}-{2 * S - 1}", S, 2 * S - 1),
    (f"bytes=5-{3 * S + 99}", 5, 3 * S + 99), ("bytes=100-", 100, 3 * S + 99), (f"bytes={3 * S}-", 3 * S, 3 * S + 99),
    ("bytes=-1", 3 * S + 99, 3 * S + 99), ("bytes=-150", 3 * S - 50, 3 * S + 99),
    (f"bytes=-{S + 7}", 2 * S + 93, 3 * S + 99), ("bytes=-999999999", 0, 3 * S + 99),
    ("bytes=10-999999999", 10, 3 * S + 99),
]


@pytest.mark.parametrize("value,start,end", RANGES)
def test_ranges(s3_any, stack, ranged_object, value, start, end):
    key, data = ranged_object
    got = s3_any.get_object(Bucket=stack.bucket, Key=key, Range=value)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["Body"].read() == data[start:end + 1]
    assert got["ContentRange"] == f"bytes {start}-{end}/{len(data)}"
    assert got["ContentLength"] == end - start + 1


@pytest.mark.parametrize("value", [f"bytes={3 * S + 100}-", f"bytes={3 * S + 100}-{3 * S + 200}", "bytes=-0",
                                   "bytes=9999999-"])
def test_unsatisfiable_ranges(s3, stack, ranged_object, value):
    key, _ = ranged_object
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=stack.bucket, Key=key, Range=value)
    assert err.value.response["Error"]["Code"] == "InvalidRange"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416


def test_any_range_on_empty_object_is_unsatisfiable(s3, stack):
    key = _key()
    s3.put_object(Bucket=stack.bucket, Key=key, Body=b"")
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=stack.bucket, Key=key, Range="bytes=0-")
    assert err.value.response["Error"]["Code"] == "InvalidRange"


@pytest.mark.parametrize("value", ["bytes=5-2", "bytes=0-1,5-6", "items=0-1", "nonsense"])
def test_ignored_ranges_return_whole_object(s3, stack, ranged_object, value):
    key, data = ranged_object
    got = s3.get_object(Bucket=stack.bucket, Key=key, Range=value)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert got["Body"].read() == data


def test_listings_show_plaintext_sizes(s3, stack):
    prefix = _key("list") + "/"
    sizes = {f"{prefix}{n}": n for n in (0, 1, S, S + 1, 200_000)}
    for key, size in sizes.items():
        s3.put_object(Bucket=stack.bucket, Key=key, Body=_data(size))
    v2 = s3.list_objects_v2(Bucket=stack.bucket, Prefix=prefix)
    assert {o["Key"]: o["Size"] for o in v2["Contents"]} == sizes
    v1 = s3.list_objects(Bucket=stack.bucket, Prefix=prefix)
    assert {o["Key"]: o["Size"] for o in v1["Contents"]} == sizes
    versions = s3.list_object_versions(Bucket=stack.bucket, Prefix=prefix)
    assert {o["Key"]: o["Size"] for o in versions["Versions"]} == sizes
    etags = {o["Key"]: o["ETag"] for o in v2["Contents"]}
    for key in sizes:
        assert s3.head_object(Bucket=stack.bucket, Key=key)["ETag"] == etags[key]


def test_conditional_gets_use_client_visible_etags(s3, stack):
    key = _key()
    etag = s3.put_object(Bucket=stack.bucket, Key=key, Body=b"hello")["ETag"]
    assert s3.get_object(Bucket=stack.bucket, Key=key, IfMatch=etag)["Body"].read() == b"hello"
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=stack.bucket, Key=key, IfNoneMatch=etag)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=stack.bucket, Key=key, IfMatch='"0123456789abcdef0123456789abcdef"')
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412


@pytest.mark.parametrize("key", ["a b+c", "ünï/cødé", "x%2Fy", "dir//double", "a?b=c&d", "~tilde*star(1)"])
def test_awkward_keys(s3, stack, key):
    s3.put_object(Bucket=stack.bucket, Key=key, Body=b"data-" + key.encode())
    assert s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == b"data-" + key.encode()
    listed = s3.list_objects_v2(Bucket=stack.bucket, Prefix=key)
    assert [o["Key"] for o in listed["Contents"]] == [key]


def test_virtual_hosted_style(s3, stack):
    """`Host: <bucket>.localhost` (botocore signs it; we connect to 127.0.0.1, as *.localhost may not resolve)."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    key = _key("virtual")
    s3.put_object(Bucket=stack.bucket, Key=key, Body=b"virtual")
    port = stack.http.url.rsplit(":", 1)[1]
    request = AWSRequest("GET", f"http://{stack.bucket}.localhost:{port}/{key}")
    S3SigV4Auth(Credentials(stack.access_key_id, stack.secret_access_key), "s3", "us-east-1").add_auth(request)
    connection = http.client.HTTPConnection("127.0.0.1", int(port), timeout=30)
    headers = {"Host": f"{stack.bucket}.localhost:{port}", **dict(request.headers.items())}
    connection.request("GET", f"/{key}", headers=headers)
    response = connection.getresponse()
    assert response.status == 200
    assert response.read() == b"virtual"


def test_delete_and_missing_key(s3, stack):
    key = _key()
    s3.put_object(Bucket=stack.bucket, Key=key, Body=b"x")
    s3.delete_object(Bucket=stack.bucket, Key=key)
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=stack.bucket, Key=key)
    assert err.value.response["Error"]["Code"] == "NoSuchKey"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket=stack.bucket, Key=key)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_user_metadata_and_headers_round_trip(s3, stack):
    key = _key()
    s3.put_object(Bucket=stack.bucket, Key=key, Body=b"{}", ContentType="application/json",
                  CacheControl="no-cache", ContentDisposition="attachment", Metadata={"a": "1", "b-c": "two"})
    head = s3.head_object(Bucket=stack.bucket, Key=key)
    assert head["ContentType"] == "application/json"
    assert head["CacheControl"] == "no-cache"
    assert head["ContentDisposition"] == "attachment"
    assert head["Metadata"] == {"a": "1", "b-c": "two"}


def test_bucket_operations_pass_through(s3, stack):
    bucket = "pass-" + uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=bucket)
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "k", "Value": "v"}]
    s3.put_object(Bucket=bucket, Key="a", Body=b"1")
    s3.put_object(Bucket=bucket, Key="b", Body=b"2")
    deleted = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a"}, {"Key": "b"}]})
    assert sorted(d["Key"] for d in deleted["Deleted"]) == ["a", "b"]
    s3.delete_bucket_tagging(Bucket=bucket)
    s3.delete_bucket(Bucket=bucket)
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_client_sse_requests_are_answered_by_the_gateway(s3, stack, store):
    """rclone's `server_side_encryption = aws:kms` and SDKs' ServerSideEncryption ask S3 to encrypt: the gateway's
    own envelope (under its KMS key, as responses say) answers that; the store is not asked to encrypt again."""
    key = f"sse/{uuid.uuid4().hex}"
    put = s3.put_object(Bucket=stack.bucket, Key=key, Body=b"asked for sse", ServerSideEncryption="aws:kms",
                        SSEKMSKeyId="alias/some-other-key", BucketKeyEnabled=True)
    assert put["ServerSideEncryption"] == "aws:kms" and put["SSEKMSKeyId"] == stack.key_arn
    assert "ServerSideEncryption" not in store.head_object(Bucket=stack.bucket, Key=key)
    # Asking for encryption makes a copy onto itself legal, as in S3.
    s3.copy_object(Bucket=stack.bucket, Key=key, CopySource={"Bucket": stack.bucket, "Key": key},
                   ServerSideEncryption="aws:kms")
    assert s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == b"asked for sse"
    mp = s3.create_multipart_upload(Bucket=stack.bucket, Key=key + "-mp", ServerSideEncryption="AES256")
    s3.abort_multipart_upload(Bucket=stack.bucket, Key=key + "-mp", UploadId=mp["UploadId"])
