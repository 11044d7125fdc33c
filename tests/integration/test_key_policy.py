"""Which master key writes which object (kms.key_policy), which keys reading accepts (kms.decrypt_key_ids), and a
second KMS key in "another region" (kms.secondary: a second moto server) that every new data key is wrapped under
and reads fall back to when the first KMS is down — real gateway processes, real sockets."""
from __future__ import annotations

import io
import urllib.request
import uuid

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from gateway.devstore import MotoServer
from tests.conftest import REGION, STORE_KEY_ID, STORE_SECRET, client_for, gateway_config, start_gateway, store_env
from tests.kmsfront import KmsFront

SECOND_REGION = "eu-west-1"


def _kms(url: str, region: str = REGION):
    return boto3.client("kms", endpoint_url=url, region_name=region, aws_access_key_id=STORE_KEY_ID,
                        aws_secret_access_key=STORE_SECRET)


def _entries(store, bucket: str, key: str) -> list[str]:
    """The key ids of the object's wrapped data-key copies, in index order."""
    meta = store.head_object(Bucket=bucket, Key=key)["Metadata"]
    names = sorted((name for name in meta if name.startswith("envelope-key-")), key=lambda n: int(n.rsplit("-")[-1]))
    return [meta[name].split(";")[1] for name in names]


def _fallbacks(admin_url: str) -> float:
    text = urllib.request.urlopen(admin_url + "/metrics", timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("envelope_kms_fallbacks_total{"))


@pytest.fixture(scope="module")
def keys(stack):
    kms = _kms(stack.store_url)
    return {name: kms.create_key(Description=name)["KeyMetadata"]["Arn"] for name in ("finance", "payroll", "new")}


@pytest.fixture(scope="module")
def policy_gateway(stack, keys, tmp_path_factory):
    config = gateway_config(stack.store_url, stack.key_arn, stack.access_key_id, stack.secret_access_key)
    config["kms"]["key_policy"] = [
        {"bucket": stack.bucket, "prefix": "finance/payroll/", "key_id": keys["payroll"]},
        {"bucket": stack.bucket, "prefix": "finance/", "key_id": keys["finance"]},
        {"bucket": "other-*", "key_id": keys["finance"]}]
    gateway = start_gateway(tmp_path_factory.mktemp("policy-keys"), "policy-keys", config, store_env(stack.store_url))
    yield gateway
    gateway.stop()


def test_the_longest_matching_prefix_picks_the_master_key(policy_gateway, stack, store, keys):
    s3 = client_for(stack, policy_gateway.url)
    run = uuid.uuid4().hex
    expected = {f"finance/{run}/a": keys["finance"], f"finance/payroll/{run}": keys["payroll"],
                f"plain/{run}": stack.key_arn, f"financial/{run}": stack.key_arn}
    for key in expected:
        s3.put_object(Bucket=stack.bucket, Key=key, Body=key.encode())
    s3.upload_fileobj(io.BytesIO(b"m" * (6 * 1024 * 1024)), stack.bucket, f"finance/payroll/{run}-mp",
                      Config=TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024))
    expected[f"finance/payroll/{run}-mp"] = keys["payroll"]
    # A copy gets the key of its destination.
    s3.copy_object(Bucket=stack.bucket, Key=f"finance/payroll/{run}-copy",
                   CopySource={"Bucket": stack.bucket, "Key": f"plain/{run}"})
    expected[f"finance/payroll/{run}-copy"] = keys["payroll"]
    for key, arn in expected.items():
        assert _entries(store, stack.bucket, key) == [arn], key
        assert s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read()[:1]
    assert s3.head_object(Bucket=stack.bucket, Key=f"finance/{run}/a")["SSEKMSKeyId"] == keys["finance"]


def test_reading_accepts_only_configured_keys(stack, keys, s3, tmp_path_factory):
    """A gateway moved to a new key reads the old key's objects only while that key is listed for decryption."""
    key = f"moved/{uuid.uuid4().hex}"
    s3.put_object(Bucket=stack.bucket, Key=key, Body=b"under the old key")
    directory = tmp_path_factory.mktemp("decrypt-keys")
    config = gateway_config(stack.store_url, keys["new"], stack.access_key_id, stack.secret_access_key)
    only_new = start_gateway(directory, "only-new", config, store_env(stack.store_url))
    config["kms"]["decrypt_key_ids"] = [stack.key_arn]
    also_old = start_gateway(directory, "also-old", config, store_env(stack.store_url))
    try:
        with pytest.raises(ClientError) as err:
            client_for(stack, only_new.url).get_object(Bucket=stack.bucket, Key=key)
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] >= 400
        reader = client_for(stack, also_old.url)
        assert reader.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == b"under the old key"
        # ... but writes with the new one only.
        reader.put_object(Bucket=stack.bucket, Key=key + "-new", Body=b"x")
        assert reader.head_object(Bucket=stack.bucket, Key=key + "-new")["SSEKMSKeyId"] == keys["new"]
    finally:
        only_new.stop()
        also_old.stop()


@pytest.fixture
def two_regions(stack, tmp_path):
    """A gateway whose first KMS is a front for moto (it can be stopped) and whose second KMS key lives in another
    moto server, standing for another region."""
    second = MotoServer().start()
    front = KmsFront(stack.store_url, REGION, STORE_KEY_ID, STORE_SECRET)
    gateway = None
    try:
        second_arn = _kms(second.url, SECOND_REGION).create_key()["KeyMetadata"]["Arn"]
        config = gateway_config(stack.store_url, stack.key_arn, stack.access_key_id, stack.secret_access_key)
        # Reads here must reach KMS to show the fallback: the keys of this gateway's own writes are not cached.
        config["kms"].update(endpoint=front.url, retry={"deadline_seconds": 1}, cache={"write_through": False},
                             secondary={"key_id": second_arn, "endpoint": second.url, "region": SECOND_REGION})
        gateway = start_gateway(tmp_path, "two-regions", config, store_env(stack.store_url))
        yield gateway, front, second, second_arn
    finally:
        if gateway is not None:
            gateway.stop()
        front.stop()
        second.stop()


def test_every_data_key_is_wrapped_in_both_regions_and_reads_fall_back(two_regions, stack, store):
    gateway, front, second, second_arn = two_regions
    s3 = client_for(stack, gateway.url)
    run = uuid.uuid4().hex
    bodies = {f"dr/{run}/{i}": f"object {i}".encode() * 1000 for i in range(3)}
    for key, body in bodies.items():
        s3.put_object(Bucket=stack.bucket, Key=key, Body=body)
        assert _entries(store, stack.bucket, key) == [stack.key_arn, second_arn]
    s3.copy_object(Bucket=stack.bucket, Key=f"dr/{run}/copy", CopySource={"Bucket": stack.bucket,
                                                                           "Key": f"dr/{run}/0"})
    assert _entries(store, stack.bucket, f"dr/{run}/copy") == [stack.key_arn, second_arn]
    first = next(iter(bodies))
    assert s3.get_object(Bucket=stack.bucket, Key=first)["Body"].read() == bodies[first]
    assert _fallbacks(gateway.admin_url) == 0

    front.stop()  # the first region's KMS is gone
    for key, body in bodies.items():
        assert s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == body
    assert s3.get_object(Bucket=stack.bucket, Key=f"dr/{run}/copy")["Body"].read() == bodies[first]
    assert _fallbacks(gateway.admin_url) >= 3  # every uncached object (the first one was cached)
    with pytest.raises(ClientError) as err:  # writes need the first KMS
        s3.put_object(Bucket=stack.bucket, Key=f"dr/{run}/refused", Body=b"x")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503


def test_a_write_that_cannot_reach_the_second_kms_stores_nothing(two_regions, stack, store):
    gateway, _, second, _ = two_regions
    s3 = client_for(stack, gateway.url)
    second.stop()
    key = f"dr/{uuid.uuid4().hex}"
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=stack.bucket, Key=key, Body=b"must stay readable in both regions, or not be written")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert "Contents" not in store.list_objects_v2(Bucket=stack.bucket, Prefix=key)
