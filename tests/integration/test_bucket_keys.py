"""Bucket-key mode against moto server: KMS calls per object written (through the gateway's own metrics), reads,
copies, multipart uploads, and a swap of two objects inside a bucket-key bucket."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from tests.conftest import client_for, gateway_config, kms_calls, start_gateway, store_env

BUCKET = "bk-logs"


@pytest.fixture(scope="module")
def bk_gateway(stack, store, tmp_path_factory):
    store.create_bucket(Bucket=BUCKET)
    config = gateway_config(stack.store_url, stack.key_arn, stack.access_key_id, stack.secret_access_key)
    config["kms"]["bucket_keys"] = {"buckets": ["bk-*"]}
    gateway = start_gateway(tmp_path_factory.mktemp("bucket-keys"), "bucket-keys", config,
                            store_env(stack.store_url))
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def s3bk(bk_gateway, stack):
    return client_for(stack, bk_gateway.url)


def calls(gateway, operation: str) -> float:
    return kms_calls(gateway.admin_url).get(operation, 0)


def test_put_heavy_workload_makes_99_percent_fewer_kms_calls(bk_gateway, s3bk, stack, store):
    prefix = f"many/{uuid.uuid4().hex}/"
    bodies = {f"{prefix}{i}": os.urandom(i * 37) for i in range(200)}
    before = calls(bk_gateway, "GenerateDataKey")
    for key, body in bodies.items():
        s3bk.put_object(Bucket=BUCKET, Key=key, Body=body)
    # One bucket key for 200 objects (none if an earlier test of this module already made it): ≥ 99.5 % fewer.
    assert calls(bk_gateway, "GenerateDataKey") - before <= 1
    # Without bucket keys every object costs a call.
    before = calls(bk_gateway, "GenerateDataKey")
    for key, body in list(bodies.items())[:20]:
        s3bk.put_object(Bucket=stack.bucket, Key=key, Body=body)
    assert calls(bk_gateway, "GenerateDataKey") - before == 20
    # Reads Decrypt the bucket key once; the DEK cache holds it for every object it made.
    before = calls(bk_gateway, "Decrypt")
    for key, body in bodies.items():
        assert s3bk.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body
    assert calls(bk_gateway, "Decrypt") - before <= 1
    entry = store.head_object(Bucket=BUCKET, Key=prefix + "5")["Metadata"]["envelope-key-0"]
    assert entry.startswith("kms-bucket-key;" + stack.key_arn + ";")


def test_objects_swapped_inside_the_bucket_are_refused(s3bk, store):
    a, b = f"swap/{uuid.uuid4().hex}/a", f"swap/{uuid.uuid4().hex}/b"
    s3bk.put_object(Bucket=BUCKET, Key=a, Body=b"A" * 1000)
    s3bk.put_object(Bucket=BUCKET, Key=b, Body=b"B" * 1000)
    stored_b = store.get_object(Bucket=BUCKET, Key=b)
    # Same bucket key, so KMS cannot tell: the name in the derivation must.
    store.put_object(Bucket=BUCKET, Key=a, Body=stored_b["Body"].read(), Metadata=stored_b["Metadata"])
    with pytest.raises(ClientError) as err:
        s3bk.get_object(Bucket=BUCKET, Key=a)["Body"].read()
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] >= 500
    assert s3bk.get_object(Bucket=BUCKET, Key=b)["Body"].read() == b"B" * 1000


def test_copies_get_a_kms_entry_of_their_own(bk_gateway, s3bk, stack, store):
    key = f"copy/{uuid.uuid4().hex}"
    body = os.urandom(300_000)
    s3bk.put_object(Bucket=BUCKET, Key=key, Body=body)
    encrypts = calls(bk_gateway, "Encrypt")
    s3bk.copy_object(Bucket=BUCKET, Key=key + "-copy", CopySource={"Bucket": BUCKET, "Key": key})
    s3bk.copy_object(Bucket=stack.bucket, Key=key + "-elsewhere", CopySource={"Bucket": BUCKET, "Key": key})
    assert calls(bk_gateway, "Encrypt") - encrypts == 2
    assert s3bk.get_object(Bucket=BUCKET, Key=key + "-copy")["Body"].read() == body
    assert s3bk.get_object(Bucket=stack.bucket, Key=key + "-elsewhere")["Body"].read() == body
    entry = store.head_object(Bucket=BUCKET, Key=key + "-copy")["Metadata"]["envelope-key-0"]
    assert entry.startswith("kms;")


def test_multipart_upload_in_a_bucket_key_bucket(s3bk):
    key = f"mp/{uuid.uuid4().hex}"
    body = os.urandom(11 * 1024 * 1024 + 7)
    s3bk.upload_fileobj(io.BytesIO(body), BUCKET, key, Config=TransferConfig(
        multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024))
    assert s3bk.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body
    assert s3bk.get_object(Bucket=BUCKET, Key=key, Range="bytes=5242870-5242889")["Body"].read() == \
        body[5242870:5242890]


def test_offline_decrypt_of_a_bucket_key_object(s3bk, stack, tmp_path):
    """The escape hatch reads bucket-key entries too: KMS unwraps the bucket key, the DEK is derived (§16)."""
    key = f"offline/{uuid.uuid4().hex}"
    body = os.urandom(200_003)
    s3bk.put_object(Bucket=BUCKET, Key=key, Body=body)
    out = tmp_path / "plain"
    result = subprocess.run([str(Path(sys.executable).parent / "envelope-gateway"), "decrypt", "--bucket", BUCKET,
                             "--key", key, "--endpoint-url", stack.store_url, "--out", str(out)],
                            env=store_env(stack.store_url), capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == body
