"""Client bucket grants (`clients[].buckets`) against a real gateway and moto server: what a restricted client may
do, and that a refused request is 403 AccessDenied with nothing forwarded to the store."""
from __future__ import annotations

import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.conftest import REGION, gateway_config, start_gateway, store_env

DROP = "drop-zone"
READER, READER_SECRET = "AKIAREADER0000000001", "reader-secret-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def policy_gateway(stack, store, tmp_path_factory):
    store.create_bucket(Bucket=DROP)
    config = gateway_config(stack.store_url, stack.key_arn, stack.access_key_id, stack.secret_access_key)
    config["clients"].append({"access_key_id": READER, "secret_access_key": READER_SECRET,
                              "buckets": {stack.bucket: "read", "drop-*": "write"}})
    gateway = start_gateway(tmp_path_factory.mktemp("policy"), "policy", config, store_env(stack.store_url))
    yield gateway
    gateway.stop()


def client(url: str, access_key_id: str, secret: str):
    return boto3.client("s3", endpoint_url=url, region_name=REGION, aws_access_key_id=access_key_id,
                        aws_secret_access_key=secret, config=Config(retries={"max_attempts": 1}))


@pytest.fixture(scope="module")
def reader(policy_gateway):
    return client(policy_gateway.url, READER, READER_SECRET)


@pytest.fixture(scope="module")
def admin(policy_gateway, stack):
    return client(policy_gateway.url, stack.access_key_id, stack.secret_access_key)


def denied(call, *args, **kwargs) -> None:
    with pytest.raises(ClientError) as err:
        call(*args, **kwargs)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert err.value.response["Error"]["Code"] in ("AccessDenied", "403")  # HEAD errors have no body


def stored_keys(store, bucket: str, prefix: str) -> list[str]:
    return [o["Key"] for o in store.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]


def test_reader_reads_but_cannot_write(admin, reader, stack, store):
    key = f"policy/{uuid.uuid4().hex}"
    admin.put_object(Bucket=stack.bucket, Key=key, Body=b"report")
    assert reader.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == b"report"
    assert reader.head_object(Bucket=stack.bucket, Key=key)["ContentLength"] == 6
    assert [o["Key"] for o in reader.list_objects_v2(Bucket=stack.bucket, Prefix=key)["Contents"]] == [key]
    denied(reader.put_object, Bucket=stack.bucket, Key=key + "-new", Body=b"x")
    denied(reader.delete_object, Bucket=stack.bucket, Key=key)
    denied(reader.delete_objects, Bucket=stack.bucket, Delete={"Objects": [{"Key": key}]})
    denied(reader.create_multipart_upload, Bucket=stack.bucket, Key=key + "-mp")
    # Nothing reached the store: the object is still there, nothing new was written, no upload was started.
    assert stored_keys(store, stack.bucket, key) == [key]
    assert not store.list_multipart_uploads(Bucket=stack.bucket, Prefix=key).get("Uploads")


def test_write_only_bucket(reader, admin, store):
    key = f"policy/{uuid.uuid4().hex}"
    reader.put_object(Bucket=DROP, Key=key, Body=b"dropped")
    assert stored_keys(store, DROP, key) == [key]
    assert admin.get_object(Bucket=DROP, Key=key)["Body"].read() == b"dropped"
    denied(reader.get_object, Bucket=DROP, Key=key)
    denied(reader.head_object, Bucket=DROP, Key=key)
    denied(reader.list_objects_v2, Bucket=DROP)


def test_copy_needs_read_on_its_source(admin, reader, stack, store):
    key = f"policy/{uuid.uuid4().hex}"
    admin.put_object(Bucket=stack.bucket, Key=key, Body=b"copy me")
    reader.copy_object(Bucket=DROP, Key=key, CopySource={"Bucket": stack.bucket, "Key": key})
    assert admin.get_object(Bucket=DROP, Key=key)["Body"].read() == b"copy me"
    denied(reader.copy_object, Bucket=DROP, Key=key + "-again", CopySource={"Bucket": DROP, "Key": key})
    upload = admin.create_multipart_upload(Bucket=DROP, Key=key + "-mp")["UploadId"]
    denied(reader.upload_part_copy, Bucket=DROP, Key=key + "-mp", UploadId=upload, PartNumber=1,
           CopySource={"Bucket": DROP, "Key": key})
    admin.abort_multipart_upload(Bucket=DROP, Key=key + "-mp", UploadId=upload)
    assert stored_keys(store, DROP, key + "-again") == []


def test_other_buckets_and_listing_buckets(admin, reader):
    denied(reader.list_buckets)
    denied(reader.create_bucket, Bucket="not-granted")
    assert DROP in [b["Name"] for b in admin.list_buckets()["Buckets"]]
