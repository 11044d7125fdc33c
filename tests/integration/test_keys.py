"""Key management against moto server, through real gateway processes: the DEK cache (warm reads make no KMS
call, single flight, revocation after the TTL) and failure behaviour (throttling, KMS down, a hanging KMS and the
circuit breaker). KMS calls are counted from the gateway's /metrics, and independently by the KMS front
(tests/kmsfront.py) where one stands between the gateway and moto."""
from __future__ import annotations

import base64
import os
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from gateway.format.envelope import encryption_context, parse_metadata
from tests.conftest import (REGION, STORE_KEY_ID, STORE_SECRET, GatewayProcess, Stack, gateway_config, start_gateway,
                            store_env)
from tests.kmsfront import KmsFront

MiB = 1024 * 1024


def _key() -> str:
    return f"keys/{uuid.uuid4().hex}"


def _code(err: pytest.ExceptionInfo) -> tuple[str, int]:
    response = err.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def metrics(gateway: GatewayProcess) -> dict[str, float]:
    """Every sample of /metrics: 'name{labels}' -> value."""
    text = urllib.request.urlopen(gateway.admin_url + "/metrics", timeout=10).read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


def kms_calls(sample: dict[str, float], operation: str, outcome: str | None = None) -> float:
    return sum(value for name, value in sample.items() if name.startswith("envelope_kms_requests_total{")
               and f'operation="{operation}"' in name and (outcome is None or f'outcome="{outcome}"' in name))


def _kms(stack: Stack):
    return boto3.client("kms", endpoint_url=stack.store_url, region_name=REGION, aws_access_key_id=STORE_KEY_ID,
                        aws_secret_access_key=STORE_SECRET)


def _stored(store, bucket: str, key: str) -> bool:
    try:
        store.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError:
        return False


# --- the DEK cache on the shared gateway ----------------------------------------------------------------------

def test_reading_back_what_was_written_makes_no_kms_call(s3, stack, store):
    """Write-through (kms.cache.write_through, on by default): the data key a PUT generated is cached, so reads
    of the object, whole or ranged, make no KMS call at all."""
    key, body = _key(), os.urandom(300_000)
    s3.put_object(Bucket=stack.bucket, Key=key, Body=body)
    written = metrics(stack.http)
    assert s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == body
    assert s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == body
    assert s3.get_object(Bucket=stack.bucket, Key=key, Range="bytes=70000-70099")["Body"].read() == \
        body[70000:70100]
    assert s3.get_object(Bucket=stack.bucket, Key=key, Range="bytes=-10")["Body"].read() == body[-10:]
    warm = metrics(stack.http)
    assert sum(kms_calls(warm, op) - kms_calls(written, op) for op in ("Decrypt", "GenerateDataKey", "DescribeKey",
                                                                       "ReEncrypt")) == 0
    assert warm["envelope_dek_cache_hits_total"] - written["envelope_dek_cache_hits_total"] == 4
    assert warm["envelope_dek_cache_entries"] >= 1
    # Audited without key material: the data key (as KMS gives it to anyone allowed) appears nowhere.
    head = store.head_object(Bucket=stack.bucket, Key=key)
    _, [wrapped] = parse_metadata(head["Metadata"])
    dek = _kms(stack).decrypt(CiphertextBlob=wrapped.blob, EncryptionContext=encryption_context(stack.bucket, key),
                              KeyId=stack.key_arn)["Plaintext"]
    log = stack.http.log()
    hits = [line for line in log.splitlines() if '"event": "CacheHit"' in line and key in line]
    assert len(hits) == 4 and all(stack.access_key_id in line for line in hits)
    exposition = urllib.request.urlopen(stack.http.admin_url + "/metrics", timeout=10).read().decode()
    for text in (log, exposition):
        for encoded in (dek.hex(), base64.b64encode(dek).decode(), base64.urlsafe_b64encode(dek).decode()[:40]):
            assert encoded not in text


def test_warm_multipart_reads_and_parts_make_no_kms_call(s3, stack):
    key, parts = _key(), [os.urandom(5 * MiB), os.urandom(1000)]
    upload_id = s3.create_multipart_upload(Bucket=stack.bucket, Key=key)["UploadId"]
    before = metrics(stack.http)
    etags = [s3.upload_part(Bucket=stack.bucket, Key=key, UploadId=upload_id, PartNumber=n + 1, Body=part)["ETag"]
             for n, part in enumerate(parts)]
    s3.complete_multipart_upload(Bucket=stack.bucket, Key=key, UploadId=upload_id, MultipartUpload={
        "Parts": [{"PartNumber": n + 1, "ETag": etag} for n, etag in enumerate(etags)]})
    for _ in range(3):
        assert s3.get_object(Bucket=stack.bucket, Key=key, PartNumber=2)["Body"].read() == parts[1]
    after = metrics(stack.http)
    # The upload's key was cached when CreateMultipartUpload generated it; its parts and the object's reads share
    # that wrapped key and context.
    assert kms_calls(after, "Decrypt") - kms_calls(before, "Decrypt") == 0


# --- gateways behind a KMS front ------------------------------------------------------------------------------

@dataclass
class Fronted:
    front: KmsFront
    gateway: GatewayProcess
    key_arn: str
    s3: object


@pytest.fixture
def fronted(stack: Stack, tmp_path: Path):
    """start(kms_settings) -> a gateway whose KMS is a front for moto, with a master key of its own (so disabling
    it touches no other test)."""
    started: list[tuple[KmsFront, GatewayProcess]] = []

    def start(**kms_settings: object) -> Fronted:
        front = KmsFront(stack.store_url, REGION, STORE_KEY_ID, STORE_SECRET)
        key_arn = _kms(stack).create_key()["KeyMetadata"]["Arn"]
        config = gateway_config(stack.store_url, key_arn, stack.access_key_id, stack.secret_access_key)
        config["kms"].update(endpoint=front.url, **kms_settings)
        try:
            gateway = start_gateway(tmp_path, f"fronted{len(started)}", config, store_env(stack.store_url))
        except BaseException:
            front.stop()
            raise
        started.append((front, gateway))
        # One attempt per call: the client's own retries would blur what each request met.
        client = boto3.client("s3", endpoint_url=gateway.url, region_name=REGION,
                              aws_access_key_id=stack.access_key_id, aws_secret_access_key=stack.secret_access_key,
                              config=Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"}))
        return Fronted(front, gateway, key_arn, client)

    yield start
    for front, gateway in started:
        front.answer_again()
        gateway.stop()
        front.stop()


def _resolve_the_key_arn(f: Fronted, stack: Stack) -> None:
    """The gateway resolves its key's ARN (DescribeKey) on its first read: done here, so that the KMS calls a test
    counts or disturbs are the data-key operations themselves."""
    key = _key()
    f.s3.put_object(Bucket=stack.bucket, Key=key, Body=b"warm-up")
    f.s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read()


# Most tests below are about reads that reach KMS: their gateways do not cache the keys of their own writes.
COLD = {"write_through": False}


def test_concurrent_cold_gets_share_one_decrypt(fronted, stack):
    f = fronted(cache=COLD)
    key, body = _key(), os.urandom(1000)
    f.s3.put_object(Bucket=stack.bucket, Key=key, Body=body)
    f.front.delay_seconds = 0.5  # every request below arrives while the first Decrypt is still in flight
    with ThreadPoolExecutor(6) as pool:
        bodies = list(pool.map(lambda _: f.s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read(), range(6)))
    assert bodies == [body] * 6
    assert f.front.received["Decrypt"] == 1
    assert kms_calls(metrics(f.gateway), "Decrypt") == 1
    joined = [line for line in f.gateway.log().splitlines() if '"outcome": "joined"' in line and key in line]
    assert len(joined) == 5


@pytest.mark.parametrize("revoke, restore, code", [
    ("disable_key", ("enable_key",), "KMS.DisabledException"),
    ("schedule_key_deletion", ("cancel_key_deletion", "enable_key"), "KMS.KMSInvalidStateException"),
])
def test_a_revoked_key_stops_reads_after_the_ttl(fronted, stack, store, revoke, restore, code):
    ttl = 3.0
    f = fronted(cache={"ttl_seconds": ttl, **COLD})
    key, body = _key(), b"revocable"
    f.s3.put_object(Bucket=stack.bucket, Key=key, Body=body)
    assert f.s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == body
    fetched_at = time.monotonic()
    kms, key_id = _kms(stack), f.key_arn.rsplit("/", 1)[1]  # moto's key-state calls take the id, not the ARN
    getattr(kms, revoke)(KeyId=key_id, **({"PendingWindowInDays": 7} if revoke == "schedule_key_deletion" else {}))
    # Within the TTL the cached data key still serves reads: that is the documented revocation bound.
    assert f.s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == body
    assert time.monotonic() - fetched_at < ttl, "too slow to observe the cached read; raise the TTL"
    # New writes are refused at once, and nothing is written.
    other = _key()
    with pytest.raises(ClientError) as err:
        f.s3.put_object(Bucket=stack.bucket, Key=other, Body=b"x")
    assert _code(err) == (code, 403)
    assert not _stored(store, stack.bucket, other)
    time.sleep(max(0.0, fetched_at + ttl - time.monotonic()) + 0.2)
    with pytest.raises(ClientError) as err:
        f.s3.get_object(Bucket=stack.bucket, Key=key)
    assert _code(err) == (code, 403)
    assert kms_calls(metrics(f.gateway), "Decrypt", "key_unusable") == 1
    for call in restore:
        getattr(kms, call)(KeyId=key_id)
    assert f.s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == body


def test_throttling_is_retried_within_the_deadline_then_slowdown(fronted, stack, store):
    f = fronted(retry={"deadline_seconds": 1, "base_delay_seconds": 0.01, "max_delay_seconds": 0.1}, cache=COLD)
    _resolve_the_key_arn(f, stack)
    key, body = _key(), b"throttled"
    f.front.throttle_next = 3
    f.s3.put_object(Bucket=stack.bucket, Key=key, Body=body)
    f.front.throttle_next = 2
    assert f.s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == body
    sample = metrics(f.gateway)
    assert (kms_calls(sample, "GenerateDataKey", "throttled"), kms_calls(sample, "GenerateDataKey", "ok")) == (3, 2)
    assert sample['envelope_kms_retries_total{operation="GenerateDataKey"}'] == 3
    assert kms_calls(sample, "Decrypt", "throttled") == 2
    # Throttled for longer than the deadline: 503 SlowDown, within about the deadline, nothing stored.
    f.front.throttle_next = 10**6
    other = _key()
    started = time.monotonic()
    with pytest.raises(ClientError) as err:
        f.s3.put_object(Bucket=stack.bucket, Key=other, Body=b"x")
    assert _code(err) == ("SlowDown", 503)
    assert time.monotonic() - started < 3
    assert not _stored(store, stack.bucket, other)
    assert kms_calls(metrics(f.gateway), "GenerateDataKey", "throttled") > 4
    assert metrics(f.gateway)["envelope_kms_breaker_open"] == 0, "throttling is an answer, not an outage"


def test_kms_down_refuses_puts_and_cached_keys_keep_reading(fronted, stack, store):
    f = fronted(retry={"deadline_seconds": 1}, cache=COLD)
    cached, uncached = _key(), _key()
    f.s3.put_object(Bucket=stack.bucket, Key=cached, Body=b"cached")
    f.s3.put_object(Bucket=stack.bucket, Key=uncached, Body=b"uncached")
    assert f.s3.get_object(Bucket=stack.bucket, Key=cached)["Body"].read() == b"cached"
    f.front.stop()
    refused = _key()
    with pytest.raises(ClientError) as err:
        f.s3.put_object(Bucket=stack.bucket, Key=refused, Body=b"must not be stored")
    assert _code(err) == ("KMS.ServiceUnavailable", 503)
    assert not _stored(store, stack.bucket, refused)
    assert f.s3.get_object(Bucket=stack.bucket, Key=cached)["Body"].read() == b"cached"
    with pytest.raises(ClientError) as err:
        f.s3.get_object(Bucket=stack.bucket, Key=uncached)
    assert _code(err) == ("KMS.ServiceUnavailable", 503)
    assert kms_calls(metrics(f.gateway), "GenerateDataKey", "unreachable") >= 1


def test_the_breaker_fails_fast_against_a_hanging_kms(fronted, stack):
    f = fronted(retry={"deadline_seconds": 1}, breaker={"failure_threshold": 2, "open_seconds": 2}, cache=COLD)
    keys = [_key() for _ in range(3)]
    for key in keys:
        f.s3.put_object(Bucket=stack.bucket, Key=key, Body=key.encode())
    _resolve_the_key_arn(f, stack)
    f.front.hang()
    for key in keys[:2]:  # each waits out the deadline: the breaker counts them
        started = time.monotonic()
        with pytest.raises(ClientError) as err:
            f.s3.get_object(Bucket=stack.bucket, Key=key)
        assert _code(err) == ("KMS.ServiceUnavailable", 503) and 0.9 < time.monotonic() - started < 3
    reached = f.front.received["Decrypt"]
    started = time.monotonic()
    with pytest.raises(ClientError) as err:
        f.s3.get_object(Bucket=stack.bucket, Key=keys[2])
    assert _code(err) == ("KMS.ServiceUnavailable", 503)
    assert time.monotonic() - started < 0.5, "refused at once, not after another deadline"
    assert f.front.received["Decrypt"] == reached, "KMS was not called"
    sample = metrics(f.gateway)
    assert sample["envelope_kms_breaker_open"] == 1
    assert sample['envelope_kms_breaker_rejections_total{operation="Decrypt"}'] == 1
    # KMS is back: after open_seconds one probe goes through, succeeds, and closes the breaker.
    f.front.answer_again()
    time.sleep(2.1)
    assert f.s3.get_object(Bucket=stack.bucket, Key=keys[2])["Body"].read() == keys[2].encode()
    assert metrics(f.gateway)["envelope_kms_breaker_open"] == 0


def test_cache_settings_reach_the_gateway(fronted, stack):
    """max_uses: a data key serves that many reads from the cache, then KMS is asked again."""
    f = fronted(cache={"ttl_seconds": 300, "max_entries": 10, "max_uses": 2, **COLD})
    key = _key()
    f.s3.put_object(Bucket=stack.bucket, Key=key, Body=b"x")
    for _ in range(4):  # a miss, two hits, a miss
        f.s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read()
    sample = metrics(f.gateway)
    assert kms_calls(sample, "Decrypt") == 2
    assert sample['envelope_dek_cache_evictions_total{reason="used_up"}'] == 1
    assert sample["envelope_dek_cache_entries"] == 1 and sample["envelope_dek_cache_bytes"] > 32


def test_written_keys_are_cached_once_every_copy_exists_and_revocation_still_applies(fronted, stack):
    """Write-through at the KMS itself (the front counts what reaches it): a PUT's data key serves the read-back;
    with write_through off the same read makes one Decrypt. A cached written key is bounded by the TTL like any."""
    ttl = 3.0
    f = fronted(cache={"ttl_seconds": ttl})
    key, body = _key(), os.urandom(70_000)
    f.s3.put_object(Bucket=stack.bucket, Key=key, Body=body)
    written_at = time.monotonic()
    assert f.s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == body
    assert time.monotonic() - written_at < ttl, "too slow to observe the cached read; raise the TTL"
    assert f.front.received["Decrypt"] == 0
    cold = fronted(cache=COLD)
    other = _key()
    cold.s3.put_object(Bucket=stack.bucket, Key=other, Body=body)
    assert cold.s3.get_object(Bucket=stack.bucket, Key=other)["Body"].read() == body
    assert cold.front.received["Decrypt"] == 1
    # After the TTL the written key is gone from the cache: the next read asks KMS (and would meet a revocation).
    time.sleep(max(0.0, written_at + ttl - time.monotonic()) + 1.2)  # + the sweeper's period
    assert metrics(f.gateway)['envelope_dek_cache_evictions_total{reason="expired"}'] >= 1
    assert f.s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == body
    assert f.front.received["Decrypt"] == 1


def test_without_write_through_an_upload_makes_one_decrypt_for_all_its_parts_and_reads(fronted, stack):
    """What a gateway that did not create an upload does (or one with write_through off): one Decrypt of the
    upload's data key serves every part, the completion and the object's reads."""
    f = fronted(cache=COLD)
    key, parts = _key(), [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(1000)]
    upload_id = f.s3.create_multipart_upload(Bucket=stack.bucket, Key=key)["UploadId"]
    etags = [f.s3.upload_part(Bucket=stack.bucket, Key=key, UploadId=upload_id, PartNumber=n + 1, Body=part)["ETag"]
             for n, part in enumerate(parts)]
    f.s3.complete_multipart_upload(Bucket=stack.bucket, Key=key, UploadId=upload_id, MultipartUpload={
        "Parts": [{"PartNumber": n + 1, "ETag": etag} for n, etag in enumerate(etags)]})
    assert f.s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == b"".join(parts)
    assert f.front.received["Decrypt"] == 1
