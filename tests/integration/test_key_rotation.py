"""KMS key rotation needs nothing from the gateway: objects written before `RotateKeyOnDemand` (or a yearly
automatic rotation) stay readable, objects written after it too, with the same gateway process and configuration.

What this proves against moto: the rotation APIs are accepted for the gateway's key, the entries keep naming the
same key ARN (rotation changes the key's backing material, never its id), and every read after the rotation is
a real KMS Decrypt (the DEK cache is off) that succeeds. moto records the rotation but does not switch the key's
material, so that KMS keeps the old material to decrypt old ciphertexts is AWS's documented guarantee, not
something a moto test can show."""
from __future__ import annotations

import uuid

import boto3
import pytest

from gateway.format.envelope import parse_metadata
from tests.conftest import REGION, STORE_KEY_ID, STORE_SECRET, client_for, gateway_config, kms_calls, \
    start_gateway, store_env
from tests.integration.test_multipart import MiB
from tests.integration.test_rewrite import _write


@pytest.fixture(scope="module")
def kms(stack):
    return boto3.client("kms", endpoint_url=stack.store_url, region_name=REGION, aws_access_key_id=STORE_KEY_ID,
                        aws_secret_access_key=STORE_SECRET)


def test_objects_written_before_a_rotation_stay_readable_without_any_change(stack, store, kms, tmp_path):
    key_arn = kms.create_key(Description="rotated")["KeyMetadata"]["Arn"]
    config = gateway_config(stack.store_url, key_arn, stack.access_key_id, stack.secret_access_key)
    config["kms"]["cache"] = {"ttl_seconds": 0}  # every read asks KMS
    gateway = start_gateway(tmp_path, "rotation", config, store_env(stack.store_url))
    try:
        s3 = client_for(stack, gateway.url)
        layouts = [0, 1, 300_000, [5 * MiB, 70_000]]
        prefix = f"rotation/{uuid.uuid4().hex}/"
        written = {f"{prefix}before-{i}": _write(s3, stack.bucket, f"{prefix}before-{i}", layout)
                   for i, layout in enumerate(layouts)}

        key_id = key_arn.rsplit("/", 1)[1]  # moto's rotation APIs want the bare key id
        kms.enable_key_rotation(KeyId=key_id, RotationPeriodInDays=365)
        kms.rotate_key_on_demand(KeyId=key_id)
        assert kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"]
        assert [r["RotationType"] for r in kms.list_key_rotations(KeyId=key_id)["Rotations"]] == ["ON_DEMAND"]

        written.update({f"{prefix}after-{i}": _write(s3, stack.bucket, f"{prefix}after-{i}", layout)
                        for i, layout in enumerate(layouts)})
        decrypts = kms_calls(gateway.admin_url).get("Decrypt", 0)
        for key, data in written.items():
            assert s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == data
            entries = parse_metadata(store.head_object(Bucket=stack.bucket, Key=key)["Metadata"])[1]
            assert [(e.scheme, e.key_id) for e in entries] == [("kms", key_arn)]
        assert kms_calls(gateway.admin_url).get("Decrypt", 0) - decrypts >= len(written)
        assert gateway.process.poll() is None  # the same process, never restarted or reconfigured
    finally:
        gateway.stop()
