"""KMS faults through real gateway processes (tests/kmsfront.py between the gateway and moto): a KMS 5xx of any
code is retried and counted by the breaker, and a second region (a second moto server) serves the reads of
objects that carry a copy under its key whenever the first region fails — closed port, 503, 500, throttling, a
reset connection, a stalled or a garbled answer — including in a gateway started while the first region was down.
Writes need both regions (docs/KEYS.md, "A second region"); /readyz needs one."""
from __future__ import annotations

import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from gateway.devstore import MotoServer, free_port
from tests.conftest import (REGION, STORE_KEY_ID, STORE_SECRET, GatewayProcess, Stack, gateway_config, start_gateway,
                            store_env)
from tests.integration.test_keys import fronted, kms_calls, metrics  # noqa: F401 (fronted: a fixture)
from tests.kmsfront import KmsFront

SECOND_REGION = "eu-west-1"
# Reads here must reach KMS: the keys of a gateway's own writes are not cached.
COLD = {"write_through": False}
FAST = {"deadline_seconds": 1, "base_delay_seconds": 0.01, "max_delay_seconds": 0.1}


def _kms(url: str, region: str):
    return boto3.client("kms", endpoint_url=url, region_name=region, aws_access_key_id=STORE_KEY_ID,
                        aws_secret_access_key=STORE_SECRET)


def _code(err: pytest.ExceptionInfo) -> tuple[str, int]:
    response = err.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def _stored(store, bucket: str, key: str) -> bool:
    return "Contents" in store.list_objects_v2(Bucket=bucket, Prefix=key)


def _ready(gateway: GatewayProcess, timeout: float = 30) -> int:
    try:
        return urllib.request.urlopen(gateway.admin_url + "/readyz", timeout=timeout).status
    except urllib.error.HTTPError as exc:
        return exc.code


@dataclass
class Regions:
    """A gateway whose first KMS is `first` (a front for the stack's moto) and whose second is `second` (a front
    for another moto server standing for another region), with a first-region key of its own."""
    first: KmsFront
    second: KmsFront
    key_id: str  # as configured: the key's ARN or an alias naming it
    config: dict
    gateway: GatewayProcess
    s3: object


@pytest.fixture(scope="module")
def second_region():
    server = MotoServer().start()
    try:
        yield server, _kms(server.url, SECOND_REGION).create_key()["KeyMetadata"]["Arn"]
    finally:
        server.stop()


@pytest.fixture
def regions(stack: Stack, second_region, tmp_path: Path):
    """start(key_as="arn" | "alias", **kms_settings) -> Regions; restart(regions, first_url) -> another gateway
    with the same keys whose first KMS is at first_url."""
    server, second_arn = second_region
    fronts: list[KmsFront] = []
    gateways: list[GatewayProcess] = []

    def launch(config: dict) -> tuple[GatewayProcess, object]:
        gateway = start_gateway(tmp_path, f"regions{len(gateways)}", config, store_env(stack.store_url))
        gateways.append(gateway)
        client = boto3.client("s3", endpoint_url=gateway.url, region_name=REGION,
                              aws_access_key_id=stack.access_key_id, aws_secret_access_key=stack.secret_access_key,
                              config=Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"}))
        return gateway, client

    def start(key_as: str = "arn", **kms_settings: object) -> Regions:
        first = KmsFront(stack.store_url, REGION, STORE_KEY_ID, STORE_SECRET)
        second = KmsFront(server.url, SECOND_REGION, STORE_KEY_ID, STORE_SECRET)
        fronts.extend((first, second))
        kms = _kms(stack.store_url, REGION)
        key_id = kms.create_key()["KeyMetadata"]["Arn"]
        if key_as == "alias":
            alias = f"alias/faults-{uuid.uuid4().hex}"
            kms.create_alias(AliasName=alias, TargetKeyId=key_id.rsplit("/", 1)[1])
            key_id = alias
        config = gateway_config(stack.store_url, key_id, stack.access_key_id, stack.secret_access_key)
        config["kms"].update(endpoint=first.url, secondary={"key_id": second_arn, "endpoint": second.url,
                                                            "region": SECOND_REGION}, **kms_settings)
        gateway, client = launch(config)
        return Regions(first, second, key_id, config, gateway, client)

    def restart(regions: Regions, first_url: str) -> tuple[GatewayProcess, object]:
        config = {**regions.config, "kms": {**regions.config["kms"], "endpoint": first_url}}
        return launch(config)

    yield start, restart
    for gateway in gateways:
        gateway.stop()
    for front in fronts:
        front.answer_again()
        front.stop()


def _write(s3, bucket: str, count: int) -> dict[str, bytes]:
    run = uuid.uuid4().hex
    bodies = {f"faults/{run}/{i}": f"object {i} ".encode() * 500 for i in range(count)}
    for key, body in bodies.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    return bodies


def _fallbacks(gateway: GatewayProcess) -> float:
    return metrics(gateway).get('envelope_kms_fallbacks_total{operation="Decrypt"}', 0.0)


# fault -> the outcome each attempt on the first region is counted as, and the write's answer.
FIRST_REGION_FAULTS = {
    "unavailable": ("kms_failure", ("KMS.ServiceUnavailable", 503)),   # 503 ServiceUnavailable
    "internal": ("kms_failure", ("KMS.ServiceUnavailable", 503)),      # 500 InternalFailure
    "kms_internal": ("kms_failure", ("KMS.ServiceUnavailable", 503)),  # 500 KMSInternalException
    "throttle": ("throttled", ("SlowDown", 503)),
    "garbage": ("bad_answer", ("KMS.ServiceUnavailable", 503)),        # a 200 that is not KMS's
    "reset": ("unreachable", ("KMS.ServiceUnavailable", 503)),
    "stall": ("timeout", ("KMS.ServiceUnavailable", 503)),             # head sent, body never finished
    "truncate": ("unreachable", ("KMS.ServiceUnavailable", 503)),      # head sent, connection closed mid-body
}


@pytest.mark.parametrize("fault", sorted(FIRST_REGION_FAULTS))
def test_reads_go_to_the_second_region_whatever_the_first_one_does(regions, stack, store, fault):
    start, _ = regions
    r = start(retry=FAST, cache=COLD)
    bodies = _write(r.s3, stack.bucket, 2)
    before = r.first.received["Decrypt"]
    r.first.fail(fault)
    for key, body in bodies.items():
        assert r.s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == body
    assert _fallbacks(r.gateway) == len(bodies)
    outcome, refused = FIRST_REGION_FAULTS[fault]
    if fault != "stall":  # a stalled front holds the requests after the first one unanswered and uncounted
        # Each attempt the gateway counts is one request KMS received: botocore does not retry behind our back.
        assert kms_calls(metrics(r.gateway), "Decrypt", outcome) == r.first.received["Decrypt"] - before >= 2
    # Writes need both regions: refused, retryable, nothing stored.
    key = f"faults/{uuid.uuid4().hex}"
    with pytest.raises(ClientError) as err:
        r.s3.put_object(Bucket=stack.bucket, Key=key, Body=b"needs both regions")
    assert _code(err) == refused
    assert not _stored(store, stack.bucket, key)


def test_the_first_region_closing_its_port_sends_reads_to_the_second(regions, stack):
    start, _ = regions
    r = start(retry=FAST, cache=COLD)
    bodies = _write(r.s3, stack.bucket, 2)
    r.first.stop()
    for key, body in bodies.items():
        assert r.s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == body
    assert _fallbacks(r.gateway) == len(bodies)


@pytest.mark.parametrize("key_as", ["arn", "alias"])
def test_a_gateway_started_while_the_first_region_is_down_reads_through_the_second(regions, stack, store, key_as):
    """Nothing at start-up, and nothing per read, waits for the first region to resolve the keys it trusts: each
    region's keys are resolved on that region, when needed."""
    start, restart = regions
    r = start(key_as, retry=FAST, cache=COLD)
    bodies = _write(r.s3, stack.bucket, 3)
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    gateway, s3 = restart(r, closed)
    assert _ready(gateway) == 200, "one region serves reads: the pod stays in service"
    for key, body in bodies.items():
        assert s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == body
    assert s3.get_object(Bucket=stack.bucket, Key=next(iter(bodies)), Range="bytes=0-5")["Body"].read() == b"object"
    assert _fallbacks(gateway) >= len(bodies)
    key = f"faults/{uuid.uuid4().hex}"
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=stack.bucket, Key=key, Body=b"needs both regions")
    assert _code(err) == ("KMS.ServiceUnavailable", 503)
    assert not _stored(store, stack.bucket, key)


def test_a_second_region_that_is_down_does_not_slow_reads_in_the_first(regions, stack):
    """The second region is asked only when the first cannot answer: its outage costs reads nothing."""
    start, _ = regions
    r = start(retry=FAST, cache=COLD)
    bodies = _write(r.s3, stack.bucket, 2)
    r.second.fail("unavailable")
    for key, body in bodies.items():
        assert r.s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == body
    assert r.second.received["Decrypt"] == r.second.received["DescribeKey"] == 0


@pytest.mark.parametrize("down, status", [("first", 200), ("second", 200), ("both", 503), ("first-hangs", 200)])
def test_readiness_needs_one_region(regions, down, status):
    """Within the kubelet's probe timeout (5 s in deploy/): a first region that hangs for its whole retry deadline
    must not hold the answer past it."""
    start, _ = regions
    r = start(retry={**FAST, "deadline_seconds": 30} if down == "first-hangs" else FAST)
    if down == "first-hangs":
        r.first.hang()
    for front in {"first": [r.first], "second": [r.second], "both": [r.first, r.second]}.get(down, []):
        front.fail("unavailable")
    assert _ready(r.gateway, timeout=5) == status


@pytest.mark.parametrize("fault", ["unavailable", "internal"])
def test_a_kms_5xx_is_retried_then_503_and_counted_by_the_breaker(fronted, stack, store, fault):  # noqa: F811
    """One region only: KMS answering 503 ServiceUnavailable or 500 InternalFailure is a KMS fault like
    KMSInternalException — retried within the deadline, and its persistence opens the breaker."""
    f = fronted(retry=FAST, breaker={"failure_threshold": 3, "open_seconds": 60}, cache=COLD)
    f.front.fail(fault, count=2)
    key = f"faults/{uuid.uuid4().hex}"
    f.s3.put_object(Bucket=stack.bucket, Key=key, Body=b"after two failures")
    assert f.s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == b"after two failures"
    assert metrics(f.gateway)['envelope_kms_retries_total{operation="GenerateDataKey"}'] == 2
    f.front.fail(fault)
    other = f"faults/{uuid.uuid4().hex}"
    with pytest.raises(ClientError) as err:
        f.s3.put_object(Bucket=stack.bucket, Key=other, Body=b"x")
    assert _code(err) == ("KMS.ServiceUnavailable", 503)
    assert not _stored(store, stack.bucket, other)
    sample = metrics(f.gateway)
    assert sample["envelope_kms_breaker_open"] == 1
    assert kms_calls(sample, "GenerateDataKey", "kms_failure") == f.front.received["GenerateDataKey"] - 1


def test_bucket_key_objects_fall_back_too(regions, stack):
    """In a bucket-key bucket the second region's copy wraps the bucket key: one Decrypt there serves them all."""
    start, _ = regions
    r = start(retry=FAST, cache=COLD, bucket_keys={"buckets": [stack.bucket]})
    bodies = _write(r.s3, stack.bucket, 3)
    r.first.fail("internal")
    for key, body in bodies.items():
        assert r.s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == body
    assert r.second.received["Decrypt"] == 1
