"""Fail closed: authentication, tampering, swapping, KMS failures, checksum failures; and secrets never leak."""
from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import urllib.error
import urllib.request
import uuid

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from gateway.format.sizes import SEALED_SEGMENT_SIZE_BYTES
from gateway.devstore import free_port
from tests.conftest import REGION, STORE_SECRET, client_for, gateway_config, start_gateway, store_env


def _key() -> str:
    return f"sec/{uuid.uuid4().hex}"


def _code(err: pytest.ExceptionInfo) -> tuple[str, int]:
    response = err.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def test_wrong_secret_is_refused_and_nothing_forwarded(stack, store):
    bad = client_for(stack, stack.http.url, secret="not-the-secret")
    key = _key()
    with pytest.raises(ClientError) as err:
        bad.put_object(Bucket=stack.bucket, Key=key, Body=b"x")
    assert _code(err) == ("SignatureDoesNotMatch", 403)
    with pytest.raises(ClientError):
        store.head_object(Bucket=stack.bucket, Key=key)


def test_unknown_access_key(stack):
    unknown = boto3.client("s3", endpoint_url=stack.http.url, region_name=REGION, aws_access_key_id="AKIAUNKNOWN",
                           aws_secret_access_key="whatever")
    with pytest.raises(ClientError) as err:
        unknown.list_objects_v2(Bucket=stack.bucket)
    assert _code(err) == ("InvalidAccessKeyId", 403)


def test_anonymous_request_is_denied(stack):
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{stack.http.url}/{stack.bucket}?list-type=2")
    assert err.value.code == 403
    assert b"<Code>AccessDenied</Code>" in err.value.read()


def test_presigned_get_and_put(s3, stack):
    key = _key()
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": stack.bucket, "Key": key}, ExpiresIn=300)
    assert requests.put(put_url, data=b"presigned body", timeout=30).status_code == 200
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": stack.bucket, "Key": key}, ExpiresIn=300)
    response = requests.get(get_url, timeout=30)
    assert response.status_code == 200 and response.content == b"presigned body"
    tampered = get_url.replace(key, key + "x")
    assert requests.get(tampered, timeout=30).status_code == 403


@pytest.mark.parametrize("signature_version", ["s3", "s3v4"])
def test_presigned_put_with_metadata_in_the_query_string(stack, store, signature_version):
    """SigV2 presigners (boto3's default) move x-amz-meta-* into the query string: S3 reads them as headers, so
    does the gateway — and refuses there what it refuses in headers."""
    presigner = boto3.client("s3", endpoint_url=stack.http.url, region_name=REGION,
                             aws_access_key_id=stack.access_key_id, aws_secret_access_key=stack.secret_access_key,
                             config=Config(signature_version=signature_version, s3={"addressing_style": "path"}))
    s3 = client_for(stack, stack.http.url)
    key = _key()
    url = presigner.generate_presigned_url("put_object", Params={"Bucket": stack.bucket, "Key": key,
                                                          "Metadata": {"owner": "alice"}}, ExpiresIn=300)
    # Sent as a plain HTTP tool would: some send the signed header too, some only the URL.
    assert requests.put(url, data=b"with metadata", headers={"x-amz-meta-owner": "alice"}, timeout=30).ok
    assert s3.head_object(Bucket=stack.bucket, Key=key)["Metadata"] == {"owner": "alice"}
    assert s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == b"with metadata"
    conflicting = requests.put(url, data=b"x", headers={"x-amz-meta-owner": "mallory"}, timeout=30)
    assert conflicting.status_code in (400, 403)
    reserved = presigner.generate_presigned_url("put_object", Params={
        "Bucket": stack.bucket, "Key": key + "-r", "Metadata": {"envelope-header": "x"}}, ExpiresIn=300)
    response = requests.put(reserved, data=b"x", headers={"x-amz-meta-envelope-header": "x"}, timeout=30)
    assert response.status_code == 400 and b"<Code>" in response.content
    assert "Contents" not in store.list_objects_v2(Bucket=stack.bucket, Prefix=key + "-r")


def test_bad_checksum_is_refused_and_not_stored(s3, stack, store):
    key = _key()
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=stack.bucket, Key=key, Body=b"payload", ContentMD5=wrong)
    assert _code(err) == ("BadDigest", 400)
    with pytest.raises(ClientError):
        store.head_object(Bucket=stack.bucket, Key=key)


def test_bad_crc32_is_refused_and_not_stored(s3, stack, store):
    key = _key()
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=stack.bucket, Key=key, Body=b"payload", ChecksumCRC32="AAAAAA==")
    assert _code(err) == ("BadDigest", 400)
    with pytest.raises(ClientError):
        store.head_object(Bucket=stack.bucket, Key=key)


def test_objects_written_around_the_gateway_are_refused(s3, stack, store):
    key = _key()
    store.put_object(Bucket=stack.bucket, Key=key, Body=b"plaintext from elsewhere")
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=stack.bucket, Key=key)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def _rewrite_stored(store, bucket: str, key: str, mutate) -> None:
    raw = store.get_object(Bucket=bucket, Key=key)
    body = mutate(bytearray(raw["Body"].read()))
    store.put_object(Bucket=bucket, Key=key, Body=bytes(body), Metadata=raw["Metadata"])


@pytest.mark.parametrize("mutation", ["flip-first", "truncate-segment", "drop-final", "extend"])
def test_tampered_small_objects_are_a_clean_5xx(s3, stack, store, mutation):
    key = _key()
    s3.put_object(Bucket=stack.bucket, Key=key, Body=os.urandom(200_000))

    def mutate(body: bytearray) -> bytearray:
        if mutation == "flip-first":
            body[10] ^= 1
            return body
        if mutation == "truncate-segment":
            return body[:-100]
        if mutation == "drop-final":
            return body[:3 * SEALED_SEGMENT_SIZE_BYTES]
        return body + body[:SEALED_SEGMENT_SIZE_BYTES]

    _rewrite_stored(store, stack.bucket, key, mutate)
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=stack.bucket, Key=key)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] >= 500
    audit = [json.loads(line) for line in stack.http.log().splitlines() if line.startswith('{"')]
    assert any(r.get("event") == "IntegrityFailure" and r.get("key") == key and r.get("principal") == stack.access_key_id
               for r in audit)


def test_tamper_detected_mid_stream_breaks_the_connection(s3, stack, store):
    key = _key()
    # Beyond the first batches (crypto.batch_bytes is at most 16 MiB, 4 MiB by default): the response has
    # started before the tampered segment is reached.
    size = 20 * 1024 * 1024
    s3.put_object(Bucket=stack.bucket, Key=key, Body=os.urandom(size))

    def flip_late(body: bytearray) -> bytearray:
        body[-1000] ^= 0x80
        return body

    _rewrite_stored(store, stack.bucket, key, flip_late)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": stack.bucket, "Key": key}, ExpiresIn=300)
    connection = http.client.HTTPConnection(url.split("/")[2], timeout=30)
    connection.request("GET", "/" + url.split("/", 3)[3])
    response = connection.getresponse()
    assert response.status == 200  # the first batch was authentic, so the response had started
    with pytest.raises(http.client.IncompleteRead):
        response.read()


def test_swapped_objects_are_refused(s3, stack, store):
    a, b = _key(), _key()
    s3.put_object(Bucket=stack.bucket, Key=a, Body=b"object a")
    s3.put_object(Bucket=stack.bucket, Key=b, Body=b"object b")
    # Someone with store access copies a's ciphertext and metadata over b.
    store.copy_object(Bucket=stack.bucket, Key=b, CopySource={"Bucket": stack.bucket, "Key": a},
                      MetadataDirective="COPY")
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=stack.bucket, Key=b)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] >= 500


@pytest.fixture(scope="module", params=["unknown-key", "kms-unreachable"])
def broken_kms_gateway(request, stack, tmp_path_factory):
    env = store_env(stack.store_url)
    key_id = stack.key_arn
    if request.param == "unknown-key":
        key_id = stack.key_arn.rsplit("/", 1)[0] + "/00000000-0000-0000-0000-000000000000"
    else:
        env["AWS_ENDPOINT_URL_KMS"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = gateway_config(stack.store_url, key_id, stack.access_key_id, stack.secret_access_key)
    config["kms"]["retry"] = {"deadline_seconds": 1}
    gateway = start_gateway(tmp_path_factory.mktemp("kms"), request.param, config, env)
    yield request.param, gateway
    gateway.stop()


def test_kms_failure_stores_nothing(broken_kms_gateway, stack, store):
    kind, gateway = broken_kms_gateway
    s3 = client_for(stack, gateway.url)
    key = _key()
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=stack.bucket, Key=key, Body=b"must not be stored")
    # A key that does not exist is the operator's to fix (403, not retryable); no answer from KMS is a 503.
    assert _code(err) == {"unknown-key": ("KMS.NotFoundException", 403),
                          "kms-unreachable": ("KMS.ServiceUnavailable", 503)}[kind]
    with pytest.raises(ClientError):
        store.head_object(Bucket=stack.bucket, Key=key)


def test_misrouted_subresources_are_refused_or_exact(s3, stack):
    # DeleteBucketEncryption must never be treated as DeleteBucket.
    bucket = "enc-" + uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=bucket)
    try:
        s3.delete_bucket_encryption(Bucket=bucket)
    except ClientError:
        pass
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    s3.delete_bucket(Bucket=bucket)


def test_unsupported_operations_get_a_clear_error(s3, stack):
    with pytest.raises(ClientError) as err:
        s3.get_object_attributes(Bucket=stack.bucket, Key="x", ObjectAttributes=["ObjectSize"])
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] in (400, 501)


def test_metrics_and_health_on_the_admin_port_only(s3, stack):
    s3.put_object(Bucket=stack.bucket, Key=_key(), Body=b"metrics")
    text = urllib.request.urlopen(stack.http.admin_url + "/metrics").read().decode()
    for name in ("envelope_requests_total", "envelope_plaintext_bytes_total", "envelope_ciphertext_bytes_total",
                 "envelope_request_duration_seconds_bucket", "envelope_kms_requests_total"):
        assert name in text
    assert 'operation="PutObject"' in text
    assert 'envelope_kms_requests_total{operation="GenerateDataKey",outcome="ok"}' in text
    plaintext_in = float(re.search(r'envelope_plaintext_bytes_total\{direction="in"\} (\S+)', text).group(1))
    assert plaintext_in >= len(b"metrics")  # small objects (sealed inline) are counted too
    assert urllib.request.urlopen(stack.http.admin_url + "/livez").status == 200
    assert urllib.request.urlopen(stack.http.admin_url + "/readyz").status == 200
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(stack.http.url + "/metrics")
    assert err.value.code == 403


def test_no_secret_in_logs_or_metrics(s3, stack):
    s3.put_object(Bucket=stack.bucket, Key=_key(), Body=b"x")
    text = urllib.request.urlopen(stack.http.admin_url + "/metrics").read().decode()
    for log in (stack.http.log(), stack.tls.log(), text):
        assert stack.secret_access_key not in log
        assert STORE_SECRET not in log


def test_client_vanishing_mid_upload_stores_nothing(s3, stack, store):
    """A body cut short must not become a (short) object: the upstream upload is aborted before its last byte."""
    import socket
    import time

    key = _key()
    url = s3.generate_presigned_url("put_object", Params={"Bucket": stack.bucket, "Key": key}, ExpiresIn=300)
    host, port = url.split("/")[2].split(":")
    path = "/" + url.split("/", 3)[3]
    declared = 8 * 1024 * 1024
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(f"PUT {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {declared}\r\n\r\n".encode())
        sock.sendall(os.urandom(declared // 2))
        time.sleep(0.5)
    time.sleep(1.0)
    with pytest.raises(ClientError):
        store.head_object(Bucket=stack.bucket, Key=key)
    assert "PutObject" in stack.http.log()


def test_boto3_default_presigned_urls_sigv2(stack):
    """boto3's generate_presigned_url defaults to SigV2 query auth: curl-style GET and PUT must work."""
    default = boto3.client("s3", endpoint_url=stack.http.url, region_name=REGION,
                           aws_access_key_id=stack.access_key_id, aws_secret_access_key=stack.secret_access_key)
    key = _key() + " with space+plus"
    put_url = default.generate_presigned_url("put_object", Params={"Bucket": stack.bucket, "Key": key}, ExpiresIn=300)
    assert "Signature=" in put_url and "X-Amz-Signature" not in put_url
    assert requests.put(put_url, data=b"sigv2 body", timeout=30).status_code == 200
    get_url = default.generate_presigned_url("get_object", Params={"Bucket": stack.bucket, "Key": key}, ExpiresIn=300)
    response = requests.get(get_url, timeout=30)
    assert response.status_code == 200 and response.content == b"sigv2 body"
    assert requests.get(get_url.replace("Signature=", "Signature=A"), timeout=30).status_code == 403
