"""Round trips through the gateway with this environment's boto3 (the newest release, flexible checksums on).

Run by tests/integration/test_newest_boto3.py with .venv-clients/bin/python; exits non-zero on any failure.
Usage: boto3_scenarios.py ENDPOINT ACCESS_KEY SECRET BUCKET [CA_FILE]
"""
from __future__ import annotations

import base64
import hashlib
import io
import os
import sys
import uuid

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

S = 64 * 1024


def main() -> int:
    endpoint, access_key, secret, bucket = sys.argv[1:5]
    ca_file = sys.argv[5] if len(sys.argv) > 5 else None
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=access_key,
                      aws_secret_access_key=secret, verify=ca_file,
                      config=Config(retries={"max_attempts": 1}, signature_version="s3v4"))
    print("boto3", boto3.__version__, "endpoint", endpoint)
    prefix = f"newest-boto3/{uuid.uuid4().hex}/"
    for size in (0, 1, S - 1, S, S + 1, 5 * 1024 * 1024 + 3):
        data = os.urandom(size)
        key = f"{prefix}{size}"
        put = s3.put_object(Bucket=bucket, Key=key, Body=data)
        assert put.get("ChecksumCRC32"), f"no checksum echoed for {size}"
        got = s3.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        assert got["Body"].read() == data, f"round trip {size}"
        assert got["ETag"] == put["ETag"]
        assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == size
        if size > 10:
            part = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=3-{size - 2}")
            assert part["Body"].read() == data[3:size - 1], f"range {size}"
            assert s3.get_object(Bucket=bucket, Key=key, Range="bytes=-5")["Body"].read() == data[-5:]
    listed = {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]}
    assert listed == {f"{prefix}{n}": n for n in (0, 1, S - 1, S, S + 1, 5 * 1024 * 1024 + 3)}, listed
    for algorithm in ("CRC32C", "SHA256", "CRC64NVME"):
        key = f"{prefix}algo-{algorithm}"
        s3.put_object(Bucket=bucket, Key=key, Body=b"x" * 1000, ChecksumAlgorithm=algorithm)
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"x" * 1000
    try:
        s3.get_object(Bucket=bucket, Key=f"{prefix}1", Range="bytes=5-")
        raise AssertionError("expected InvalidRange")
    except ClientError as err:
        assert err.response["Error"]["Code"] == "InvalidRange"
    multipart_keys = multipart(s3, bucket, prefix)
    deleted = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in [*listed, *multipart_keys]]})
    assert len(deleted["Deleted"]) == len(listed) + len(multipart_keys)
    print("all scenarios passed")
    return 0


def multipart(s3, bucket: str, prefix: str) -> list[str]:
    """The flexible-checksum multipart flows: the managed transfer (CRC32 by default, a full-object checksum at
    Complete in recent releases), and the low-level calls with SHA256 at Create, per part and in Complete."""
    mib = 1024 * 1024
    data = os.urandom(12 * mib + 7)
    managed = f"{prefix}multipart-managed"
    config = TransferConfig(multipart_threshold=5 * mib, multipart_chunksize=5 * mib, max_concurrency=3)
    s3.upload_fileobj(io.BytesIO(data), bucket, managed, Config=config)
    back = io.BytesIO()
    s3.download_fileobj(bucket, managed, back, Config=config)
    assert back.getvalue() == data, "managed multipart round trip"
    got = s3.get_object(Bucket=bucket, Key=managed, ChecksumMode="ENABLED")
    assert got["Body"].read() == data and got["ContentLength"] == len(data)

    explicit = f"{prefix}multipart-sha256"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=explicit, ChecksumAlgorithm="SHA256")["UploadId"]
    parts = []
    for number, chunk in enumerate((data[:5 * mib], data[5 * mib:]), start=1):
        response = s3.upload_part(Bucket=bucket, Key=explicit, UploadId=upload_id, PartNumber=number, Body=chunk,
                                  ChecksumAlgorithm="SHA256")
        assert response["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(chunk).digest()).decode()
        parts.append({"PartNumber": number, "ETag": response["ETag"], "ChecksumSHA256": response["ChecksumSHA256"]})
    s3.complete_multipart_upload(Bucket=bucket, Key=explicit, UploadId=upload_id, MultipartUpload={"Parts": parts})
    assert s3.get_object(Bucket=bucket, Key=explicit)["Body"].read() == data, "explicit multipart round trip"
    head = s3.head_object(Bucket=bucket, Key=explicit)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=explicit)["Contents"][0]
    assert head["ContentLength"] == listed["Size"] == len(data) and head["ETag"] == listed["ETag"]
    return [managed, explicit]


if __name__ == "__main__":
    sys.exit(main())
