"""`envelope-gateway rewrap` against moto server, as an operator runs it: a subprocess with only the store's and
KMS's credentials. Objects written through a gateway configured with the stack's key K0 are refused by a gateway
configured with another key K; after the rewrap that gateway reads them byte for byte, with the same ETags, listed
sizes, metadata and tags. A second run changes nothing and calls KMS not once; a state file resumes a run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from gateway.format.bucketkey import BucketKeyBlob
from gateway.format.envelope import parse_metadata
from gateway.tools.rewrap import rewrap_bucket
from tests.conftest import REGION, STORE_KEY_ID, STORE_SECRET, client_for, gateway_config, start_gateway, store_env
from tests.integration.test_rewrite import ATTRIBUTES, LAYOUTS, _write

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def kms(stack):
    return boto3.client("kms", endpoint_url=stack.store_url, region_name=REGION, aws_access_key_id=STORE_KEY_ID,
                        aws_secret_access_key=STORE_SECRET)


@pytest.fixture(scope="module")
def new_key(kms) -> str:
    return kms.create_key(Description="rewrap target")["KeyMetadata"]["Arn"]


def _gateway(stack, tmp_path_factory, name: str, key_arn: str):
    config = gateway_config(stack.store_url, key_arn, stack.access_key_id, stack.secret_access_key)
    config["kms"]["bucket_keys"] = {"buckets": ["rwbk-*"]}
    return start_gateway(tmp_path_factory.mktemp(name), name, config, store_env(stack.store_url))


@pytest.fixture(scope="module")
def new_gateway(stack, new_key, tmp_path_factory):
    """A gateway that trusts only the new key (and writes bucket keys in rwbk-* buckets)."""
    gateway = _gateway(stack, tmp_path_factory, "rewrap-new-key", new_key)
    yield client_for(stack, gateway.url)
    gateway.stop()


@pytest.fixture(scope="module")
def bucket_key_gateway(stack, tmp_path_factory):
    """The stack's key K0, with bucket keys in rwbk-* buckets."""
    gateway = _gateway(stack, tmp_path_factory, "rewrap-bucket-keys", stack.key_arn)
    yield client_for(stack, gateway.url)
    gateway.stop()


def _bucket(store, prefix: str = "rw") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    store.create_bucket(Bucket=name)
    return name


def _rewrap(stack, bucket: str, to_key: str, *args: str) -> tuple[int, dict, str]:
    result = subprocess.run([str(BIN / "envelope-gateway"), "rewrap", "--bucket", bucket, "--to-key", to_key,
                             "--endpoint-url", stack.store_url, "--json", *args],
                            env=store_env(stack.store_url), capture_output=True, text=True, timeout=300)
    summary = json.loads(result.stdout) if result.stdout else {}
    return result.returncode, summary, result.stderr


def _refused(client, bucket: str, key: str) -> bool:
    try:
        client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        return exc.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    return False


def _entries(store, bucket: str, key: str):
    return parse_metadata(store.head_object(Bucket=bucket, Key=key)["Metadata"])[1]


def test_rewrap_moves_every_object_to_the_new_key_and_a_second_run_does_nothing(stack, s3, store, new_key,
                                                                                 new_gateway):
    bucket = _bucket(store)
    written = {f"data/{name} ü": _write(s3, bucket, f"data/{name} ü", layout, **ATTRIBUTES)
               for name, layout in LAYOUTS.items()}
    store.put_object(Bucket=bucket, Key="data/plain", Body=b"not the gateway's", Metadata={"a": "b"})
    store.put_object(Bucket=bucket, Key=".envelope-gateway/uploads/x/state", Body=b"{}")
    heads = {key: store.head_object(Bucket=bucket, Key=key) for key in [*written, "data/plain",
                                                                        ".envelope-gateway/uploads/x/state"]}
    listed = {e["Key"]: (e["ETag"], e["Size"]) for e in new_gateway.list_objects_v2(Bucket=bucket)["Contents"]}
    assert all(_refused(new_gateway, bucket, key) for key in written)  # "not wrapped by this gateway's KMS key"

    code, summary, stderr = _rewrap(stack, bucket, new_key)
    assert code == 0, stderr
    assert summary == {"rewritten": len(written), "already_under_target": 0, "other_keys": 0, "not_gateway": 1,
                       "gone": 0, "failed": {}, "reencrypt_calls": len(written),
                       "sources": {stack.key_arn: len(written)}, "dry_run": False}
    for key, data in written.items():
        got = new_gateway.get_object(Bucket=bucket, Key=key)
        assert got["Body"].read() == data
        assert got["Metadata"] == ATTRIBUTES["Metadata"] and got["ContentType"] == ATTRIBUTES["ContentType"]
        after = store.head_object(Bucket=bucket, Key=key)
        assert (after["ETag"], after["ContentLength"]) == (heads[key]["ETag"], heads[key]["ContentLength"])
        assert after["CacheControl"] == ATTRIBUTES["CacheControl"]
        assert [e.key_id for e in _entries(store, bucket, key)] == [new_key]
        assert len(store.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]) == 2
        assert _refused(s3, bucket, key)  # the old gateway trusts only K0
    assert {e["Key"]: (e["ETag"], e["Size"]) for e in new_gateway.list_objects_v2(Bucket=bucket)["Contents"]} \
        == listed
    assert {key: (len(data)) for key, data in written.items()} == {key: listed[key][1] for key in written}
    for key in ("data/plain", ".envelope-gateway/uploads/x/state"):
        after = store.head_object(Bucket=bucket, Key=key)
        assert (after["LastModified"], after["Metadata"]) == (heads[key]["LastModified"], heads[key]["Metadata"])

    modified = {key: store.head_object(Bucket=bucket, Key=key)["LastModified"] for key in written}
    code, summary, stderr = _rewrap(stack, bucket, new_key)
    assert code == 0, stderr
    assert (summary["rewritten"], summary["already_under_target"], summary["reencrypt_calls"]) == (0, 5, 0)
    assert {key: store.head_object(Bucket=bucket, Key=key)["LastModified"] for key in written} == modified


def test_bucket_key_objects_keep_their_salt_and_cost_one_reencrypt(stack, store, kms, new_key, new_gateway,
                                                                   bucket_key_gateway):
    bucket = _bucket(store, "rwbk")
    written = {f"o{i}": _write(bucket_key_gateway, bucket, f"o{i}", layout)
               for i, layout in enumerate([0, 1, 200_000, [5 * 2**20, 70_000]])}
    before = {key: _entries(store, bucket, key)[0] for key in written}
    assert {entry.scheme for entry in before.values()} == {"kms-bucket-key"}
    assert len({BucketKeyBlob.decode(entry.blob).wrapped_bucket_key for entry in before.values()}) == 1

    alias = f"alias/rewrap-{uuid.uuid4().hex[:8]}"
    kms.create_alias(AliasName=alias, TargetKeyId=new_key)
    code, summary, stderr = _rewrap(stack, bucket, alias, "--from-key", stack.key_arn)
    assert code == 0, stderr
    assert (summary["rewritten"], summary["reencrypt_calls"]) == (len(written), 1)
    for key, data in written.items():
        entry = _entries(store, bucket, key)[0]
        assert (entry.scheme, entry.key_id) == ("kms-bucket-key", new_key)
        assert BucketKeyBlob.decode(entry.blob).salt == BucketKeyBlob.decode(before[key].blob).salt
        assert new_gateway.get_object(Bucket=bucket, Key=key)["Body"].read() == data


def test_a_failed_object_is_retried_from_the_state_file_and_the_rest_is_not_redone(stack, s3, store, new_key,
                                                                                  new_gateway, tmp_path):
    bucket = _bucket(store)
    written = {f"k{i}": _write(s3, bucket, f"k{i}", 100 + i) for i in range(5)}
    # k2 copied around the gateway, metadata and all: KMS refuses its context under the new name.
    stored = store.get_object(Bucket=bucket, Key="k2")
    store.put_object(Bucket=bucket, Key="k2-copy", Body=stored["Body"].read(), Metadata=stored["Metadata"])
    state = tmp_path / "rewrap.state"

    code, summary, stderr = _rewrap(stack, bucket, new_key, "--state-file", str(state), "--concurrency", "2")
    assert code == 5, stderr
    assert summary["rewritten"] == 5 and list(summary["failed"]) == ["k2-copy"], json.dumps(summary)
    assert "integrity check failed" in summary["failed"]["k2-copy"]
    recorded = json.loads(state.read_text())
    assert (recorded["after"], list(recorded["failed"])) == ("k4", ["k2-copy"])

    s3.put_object(Bucket=bucket, Key="k2-copy", Body=b"written again through the gateway")
    code, summary, stderr = _rewrap(stack, bucket, new_key, "--state-file", str(state))
    assert code == 0, stderr
    # Only the failed object was looked at again; k0..k4 were not even listed.
    assert (summary["rewritten"], summary["already_under_target"], summary["failed"]) == (1, 0, {})
    assert json.loads(state.read_text())["failed"] == {}
    assert new_gateway.get_object(Bucket=bucket, Key="k2-copy")["Body"].read() == b"written again through the gateway"
    assert all(new_gateway.get_object(Bucket=bucket, Key=k)["Body"].read() == v for k, v in written.items())


def test_an_interrupted_run_resumes_after_its_watermark(stack, s3, store, new_key, new_gateway, tmp_path):
    bucket = _bucket(store)
    for i in range(5):
        _write(s3, bucket, f"k{i}", 10)
    state = tmp_path / "rewrap.state"
    # What a run interrupted after k0..k2 settled leaves behind, with an object that failed and is deleted since.
    state.write_text(json.dumps({"version": 1, "bucket": bucket, "prefix": "", "target": new_key, "after": "k2",
                                 "failed": {"k1-deleted": "KMS failed"}}))
    code, summary, stderr = _rewrap(stack, bucket, new_key, "--state-file", str(state))
    assert code == 0, stderr
    assert (summary["rewritten"], summary["gone"]) == (2, 1)
    assert json.loads(state.read_text())["failed"] == {}
    assert [_refused(new_gateway, bucket, f"k{i}") for i in range(5)] == [True, True, True, False, False]

    code, _, stderr = _rewrap(stack, "another-bucket", new_key, "--state-file", str(state))
    assert code == 2 and "records a sweep of bucket" in stderr


def test_dry_run_counts_and_changes_nothing(stack, s3, store, new_key, tmp_path):
    bucket = _bucket(store)
    _write(s3, bucket, "a", 10)
    _write(s3, bucket, "b/c", 10)
    state = tmp_path / "state"
    code, summary, stderr = _rewrap(stack, bucket, new_key, "--dry-run", "--prefix", "b/", "--state-file",
                                    str(state))
    assert code == 0, stderr
    assert (summary["rewritten"], summary["reencrypt_calls"], summary["dry_run"]) == (1, 0, True)
    assert [e.key_id for e in _entries(store, bucket, "b/c")] == [stack.key_arn]
    assert not state.exists()


def test_an_object_overwritten_during_the_rewrap_is_retried_not_clobbered(stack, s3, store, kms, new_key,
                                                                          new_gateway):
    bucket = _bucket(store)
    _write(s3, bucket, "busy", [5 * 2**20, 1000])
    newer = os.urandom(3000)

    class OverwrittenOnce:
        """The store, with a client PUT through the gateway landing just before rewrite's last check."""
        def __init__(self, client):
            self._client, self.overwrites = client, 0

        def __getattr__(self, name):
            return getattr(self._client, name)

        def head_object(self, **params):
            if "IfMatch" in params and not self.overwrites:
                self.overwrites += 1
                s3.put_object(Bucket=bucket, Key="busy", Body=newer)
            return self._client.head_object(**params)

    store_with_writer = OverwrittenOnce(store)
    summary = rewrap_bucket(store_with_writer, kms, bucket, new_key)  # the library call, in this process
    assert store_with_writer.overwrites == 1
    assert (summary.rewritten, summary.failed) == (1, {})
    assert new_gateway.get_object(Bucket=bucket, Key="busy")["Body"].read() == newer
    assert store.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
