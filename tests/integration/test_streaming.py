"""aws-chunked uploads as SDKs send them: signed chunks (STREAMING-AWS4-HMAC-SHA256-PAYLOAD), signed chunks with
a signed checksum trailer, and boto3's own unsigned-trailer bodies over TLS; checksums echoed, never of ciphertext."""
from __future__ import annotations

import base64
import datetime
import hashlib
import http.client
import os
import uuid
import zlib

import pytest
from botocore.exceptions import ClientError

from gateway.s3.sigv4 import (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, Credentials, chunk_signature,
                              sign_request, signing_key, trailer_signature)
from tests.conftest import REGION

CHUNK = 64 * 1024


def _crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def _signed_streaming_put(stack, key: str, data: bytes, *, trailer: bool, corrupt: str | None = None) -> tuple:
    host = stack.http.url.split("//", 1)[1]
    raw_path = f"/{stack.bucket}/{key}"
    now = datetime.datetime.now(datetime.timezone.utc)
    chunks = [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)]
    headers = {"host": host, "content-encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data))}
    if trailer:
        headers["x-amz-trailer"] = "x-amz-checksum-crc32"
    payload = STREAMING_SIGNED_TRAILER if trailer else STREAMING_SIGNED
    # The encoded length must be known before signing: build the body with placeholder-sized signatures.
    sizes = [len(c) for c in chunks] + [0]
    body_length = sum(len(f"{n:x};chunk-signature=".encode()) + 64 + 2 + n + 2 for n in sizes)
    trailer_lines = [("x-amz-checksum-crc32", _crc32_b64(data))]
    if trailer:
        body_length += sum(len(f"{k}:{v}\r\n") for k, v in trailer_lines) + len("x-amz-trailer-signature:") + 64 + 4
        body_length -= 2  # the final chunk's CRLF is replaced by the trailer section
    headers["content-length"] = str(body_length)
    credentials = Credentials(stack.access_key_id, stack.secret_access_key)
    signed = sign_request("PUT", raw_path, "", headers, payload, credentials, REGION, now)
    seed = signed["Authorization"].rsplit("Signature=", 1)[1]
    amz_date = signed["x-amz-date"]
    scope = f"{amz_date[:8]}/{REGION}/s3/aws4_request"
    signing = signing_key(stack.secret_access_key, amz_date[:8], REGION, "s3")
    body, previous = bytearray(), seed
    for piece in [*chunks, b""]:
        signature = chunk_signature(signing, amz_date, scope, previous, hashlib.sha256(piece).hexdigest())
        if corrupt == "chunk-signature" and piece is chunks[0]:
            signature = "0" * 64
        previous = signature
        body += f"{len(piece):x};chunk-signature={signature}\r\n".encode() + piece
        if piece or not trailer:
            body += b"\r\n"
    if trailer:
        if corrupt == "trailer-value":
            trailer_lines = [("x-amz-checksum-crc32", _crc32_b64(data + b"x"))]
        for name, value in trailer_lines:
            body += f"{name}:{value}\r\n".encode()
        signature = trailer_signature(signing, amz_date, scope, previous, trailer_lines)
        body += f"x-amz-trailer-signature:{signature}\r\n\r\n".encode()
    assert len(body) == body_length
    connection = http.client.HTTPConnection(host, timeout=60)
    connection.request("PUT", raw_path, body=bytes(body), headers={**headers, **signed})
    response = connection.getresponse()
    return response.status, dict(response.getheaders()), response.read()


@pytest.mark.parametrize("trailer", [False, True])
@pytest.mark.parametrize("size", [0, 1, CHUNK, 3 * CHUNK + 7])
def test_signed_streaming_upload(s3, stack, trailer, size):
    key = f"stream/{uuid.uuid4().hex}"
    data = os.urandom(size)
    status, headers, body = _signed_streaming_put(stack, key, data, trailer=trailer)
    assert status == 200, body
    if trailer:
        assert headers.get("x-amz-checksum-crc32") == _crc32_b64(data)
    assert s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == data


@pytest.mark.parametrize("corrupt,code", [("chunk-signature", b"SignatureDoesNotMatch"),
                                          ("trailer-value", b"BadDigest")])
def test_signed_streaming_failures_store_nothing(stack, store, corrupt, code):
    key = f"stream/{uuid.uuid4().hex}"
    status, _, body = _signed_streaming_put(stack, key, os.urandom(3 * CHUNK + 7), trailer=True, corrupt=corrupt)
    assert status in (400, 403) and code in body
    with pytest.raises(ClientError):
        store.head_object(Bucket=stack.bucket, Key=key)


def test_boto3_tls_trailer_checksum_is_echoed(s3_tls, stack):
    data = os.urandom(100_000)
    put = s3_tls.put_object(Bucket=stack.bucket, Key=f"stream/{uuid.uuid4().hex}", Body=data)
    assert put["ChecksumCRC32"] == _crc32_b64(data)


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "SHA1", "SHA256", "CRC64NVME"])
def test_every_checksum_algorithm_verifies(s3_any, stack, algorithm):
    data = os.urandom(70_000)
    key = f"stream/{uuid.uuid4().hex}"
    put = s3_any.put_object(Bucket=stack.bucket, Key=key, Body=data, ChecksumAlgorithm=algorithm)
    assert put.get(f"Checksum{algorithm}")
    assert s3_any.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == data


def test_get_with_checksum_mode_never_returns_a_ciphertext_checksum(s3_any, stack):
    key = f"stream/{uuid.uuid4().hex}"
    data = os.urandom(10_000)
    s3_any.put_object(Bucket=stack.bucket, Key=key, Body=data)
    got = s3_any.get_object(Bucket=stack.bucket, Key=key, ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert not any(name.startswith("Checksum") and name != "ChecksumType" for name in got)
