"""Isolation acceptance (issue 15): clients that stop halfway do not hurt anyone else.

With 100 GETs nobody reads, 100 uploads that stopped sending and 1,000 half-sent request heads held open at once,
an unrelated client's 4 MiB PUT + GET round trips all succeed; the gateway closes every stalled connection within
its timeout; nothing is stored for a stalled upload; the gateway's RSS stays under a bound.

The latency comparison (loaded p99 of the unrelated round trips against unloaded p99) is printed and, when
ENVELOPE_ISOLATION_REPORT names a file, written there as JSON for the soak report (`make soak`); it is not asserted
here: timing on a shared machine is not a test verdict.
"""
from __future__ import annotations

import hashlib
import json
import os
import resource
import time

import boto3
import pytest
from botocore.config import Config

from gateway.s3.sigv4 import Credentials
from tests.conftest import REGION, gateway_config, start_gateway, store_env
from tests.rawpeers import RawPeer, open_fds, partial_head, stalled_upload, unread_get, wait_until_closed

pytestmark = pytest.mark.slow

TIMEOUT_SECONDS = 15.0  # both request_head_seconds and client_idle_seconds: long enough to measure under load
CLOSE_SLACK_SECONDS = 30.0  # "within its timeout": a generous upper bound, not a timing measurement
HEADS, UPLOADS, GETS = 1000, 100, 100
GET_OBJECT_BYTES = 16 << 20  # more than the kernel's socket buffers can hide: an unread GET really stalls
ROUND_TRIP_BYTES = 4 << 20
ROUND_TRIPS = 8
RSS_BOUND_BYTES = int(os.environ.get("ENVELOPE_ISOLATION_RSS_MIB", "512")) << 20


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        pytest.skip(f"needs {needed} file descriptors, the hard limit is {soft}")


def _rss(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def _body(seed: int) -> bytes:
    return hashlib.sha256(str(seed).encode()).digest() * (ROUND_TRIP_BYTES // 32)


def _round_trip(client, bucket: str, seed: int) -> float:
    body, key = _body(seed), f"isolation/unrelated-{seed}"
    started = time.monotonic()
    client.put_object(Bucket=bucket, Key=key, Body=body)
    got = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    elapsed = time.monotonic() - started
    assert got == body, f"round trip {seed}: wrong bytes back"
    return elapsed


@pytest.fixture(scope="module")
def isolated_gateway(stack, tmp_path_factory):
    _raise_fd_limit(HEADS + UPLOADS + GETS + 1000)  # before the gateway starts: it inherits the limit
    config = gateway_config(stack.store_url, stack.key_arn, stack.access_key_id, stack.secret_access_key)
    config["timeouts"] = {"request_head_seconds": TIMEOUT_SECONDS, "client_idle_seconds": TIMEOUT_SECONDS}
    gateway = start_gateway(tmp_path_factory.mktemp("isolation"), "isolation", config, store_env(stack.store_url))
    yield gateway
    gateway.stop()


def test_stalled_clients_do_not_hurt_an_unrelated_client(stack, store, isolated_gateway):
    gateway = isolated_gateway
    client = boto3.client("s3", endpoint_url=gateway.url, region_name=REGION,
                          aws_access_key_id=stack.access_key_id, aws_secret_access_key=stack.secret_access_key,
                          config=Config(signature_version="s3v4", retries={"max_attempts": 1},
                                        s3={"addressing_style": "path"}, read_timeout=60))
    credentials = Credentials(stack.access_key_id, stack.secret_access_key)
    bucket = stack.bucket
    client.put_object(Bucket=bucket, Key="isolation/unread", Body=b"\x42" * GET_OBJECT_BYTES)
    unloaded = [_round_trip(client, bucket, seed) for seed in range(ROUND_TRIPS)]
    fds_before = open_fds(gateway.pid)

    peers: dict[str, list[RawPeer]] = {"get": [], "upload": [], "head": []}
    try:
        peers["get"] = [unread_get(gateway.url, credentials, bucket, "isolation/unread") for _ in range(GETS)]
        peers["upload"] = [stalled_upload(gateway.url, credentials, bucket, f"isolation/stalled-{i}",
                                          declared=1 << 20, sent=64 << 10) for i in range(UPLOADS)]
        peers["head"] = [partial_head(gateway.url) for _ in range(HEADS)]
        held_since = time.monotonic()

        # The unrelated client, while all of that is held (bounded: ROUND_TRIPS, and well inside the timeout).
        loaded, failed = [], []
        for seed in range(ROUND_TRIPS, 2 * ROUND_TRIPS):
            if time.monotonic() - held_since > TIMEOUT_SECONDS * 0.6:
                break
            try:
                loaded.append(_round_trip(client, bucket, seed))
            except Exception as exc:  # noqa: BLE001 - reported with the latencies, then asserted
                failed.append(f"{type(exc).__name__}: {exc}")
        _report(unloaded, loaded, failed, held_since)
        assert not failed, f"unrelated round trips failed under load: {failed}"
        assert loaded, "no unrelated round trip fitted in the window the load was held"

        # Heads and uploads: the gateway ends each (a 400 RequestTimeout at most, never a 5xx), within its timeout.
        quiet = peers["head"] + peers["upload"]
        still_open = wait_until_closed(quiet, TIMEOUT_SECONDS + CLOSE_SLACK_SECONDS)
        assert not still_open, f"{len(still_open)} stalled heads/uploads still open"
        for kind in ("head", "upload"):
            for peer in peers[kind]:
                assert peer.closed_at - peer.opened_at <= TIMEOUT_SECONDS + CLOSE_SLACK_SECONDS
                if peer.received:
                    assert peer.status() == 400, (kind, bytes(peer.received[:300]))
                    assert b"<Code>RequestTimeout</Code>" in peer.received, (kind, bytes(peer.received[:300]))
        assert any(peer.received for peer in peers["upload"]), "no stalled upload was told RequestTimeout"

        # Unread GETs: the gateway lets go of them (its open descriptors fall back), without their being read.
        deadline = held_since + TIMEOUT_SECONDS + CLOSE_SLACK_SECONDS
        while open_fds(gateway.pid) > fds_before + 10 and time.monotonic() < deadline:
            time.sleep(0.5)
        held = open_fds(gateway.pid) - fds_before
        assert held <= 10, f"the gateway still holds {held} more descriptors than before the load"
        # Reading them now shows each was cut short: a truncated body, then the end of the connection.
        still_open = wait_until_closed(peers["get"], CLOSE_SLACK_SECONDS)
        assert not still_open, f"{len(still_open)} unread GETs still open"
        assert all(len(peer.received) < GET_OBJECT_BYTES for peer in peers["get"])

        listed = store.list_objects_v2(Bucket=bucket, Prefix="isolation/stalled-").get("Contents", [])
        assert listed == [], "a stalled upload was stored"
        peak = _rss(gateway.pid, "VmHWM")
        print(f"gateway peak RSS {peak / 2**20:.0f} MiB (bound {RSS_BOUND_BYTES / 2**20:.0f} MiB)")
        assert peak <= RSS_BOUND_BYTES
    finally:
        for group in peers.values():
            for peer in group:
                peer.close()


def _report(unloaded: list[float], loaded: list[float], failed: list[str], held_since: float) -> None:
    result = {"unloaded_p99_seconds": round(_p99(unloaded), 4),
              "loaded_p99_seconds": round(_p99(loaded), 4) if loaded else None,
              "round_trips": {"unloaded": len(unloaded), "loaded": len(loaded), "loaded_failed": len(failed)},
              "failures": failed[:5], "round_trip_bytes": ROUND_TRIP_BYTES,
              "held": {"unread_gets": GETS, "stalled_uploads": UPLOADS, "half_sent_heads": HEADS},
              "loaded_window_seconds": round(time.monotonic() - held_since, 2)}
    result["ratio"] = round(result["loaded_p99_seconds"] / result["unloaded_p99_seconds"], 2) \
        if loaded and not failed else None
    result["within_3x"] = result["ratio"] is not None and result["ratio"] <= 3.0
    print("isolation round trips:", json.dumps(result))
    path = os.environ.get("ENVELOPE_ISOLATION_REPORT")
    if path:
        with open(path, "w") as out:
            json.dump(result, out, indent=2)
