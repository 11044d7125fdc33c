"""Operating the gateway: health endpoints, graceful shutdown, access and audit logs."""
from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest
from botocore.exceptions import ClientError

from tests.conftest import client_for, gateway_config, start_gateway, store_env


def test_health_endpoints(stack):
    for path in ("/livez", "/startupz", "/readyz"):
        assert urllib.request.urlopen(stack.http.admin_url + path, timeout=10).status == 200


def test_audit_log_records_key_operations_with_principal_and_object(s3, stack):
    key = f"ops/{uuid.uuid4().hex}"
    s3.put_object(Bucket=stack.bucket, Key=key, Body=b"audited")
    s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read()
    records = [json.loads(line) for line in stack.http.log().splitlines() if line.startswith("{")]
    events = [(r["event"], r["outcome"]) for r in records if r.get("key") == key and r.get("logger") == "envelope.audit"]
    # The read uses the data key cached by the write (write-through): audited as a CacheHit, like a Decrypt.
    assert ("GenerateDataKey", "ok") in events and ("CacheHit", "ok") in events
    hit = next(r for r in records if r.get("key") == key and r.get("event") == "CacheHit")
    assert hit["principal"] == stack.access_key_id and hit["kms_key_id"] == stack.key_arn
    generate = next(r for r in records if r.get("key") == key and r.get("event") == "GenerateDataKey")
    assert generate["principal"] == stack.access_key_id
    assert generate["bucket"] == stack.bucket and generate["kms_key_id"] == stack.key_arn


def test_access_log_has_request_ids_and_no_secrets(s3, stack):
    response = s3.put_object(Bucket=stack.bucket, Key=f"ops/{uuid.uuid4().hex}", Body=b"x")
    request_id = response["ResponseMetadata"]["RequestId"]
    log = stack.http.log()
    line = next(line for line in log.splitlines() if request_id in line)
    assert "PutObject" in line and "upstream_request_id=" in line
    assert stack.secret_access_key not in log
    assert "Authorization" not in log and "AWS4-HMAC-SHA256 Credential" not in log


@pytest.fixture()
def draining_gateway(stack, tmp_path):
    config = {**gateway_config(stack.store_url, stack.key_arn, stack.access_key_id, stack.secret_access_key),
              "shutdown_grace_seconds": 3}
    gateway = start_gateway(tmp_path, "drain", config, store_env(stack.store_url))
    yield gateway
    gateway.stop()


def _slow_put(url: str, total: int, seconds: float, outcome: dict) -> None:
    host, port = url.split("/")[2].split(":")
    path = "/" + url.split("/", 3)[3]
    try:
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(f"PUT {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {total}\r\n\r\n".encode())
            pieces = 16
            assert total % pieces == 0
            for _ in range(pieces):
                sock.sendall(os.urandom(total // pieces))
                time.sleep(seconds / pieces)
            outcome["response"] = sock.recv(4096)
    except OSError as exc:
        outcome["error"] = exc


@pytest.mark.parametrize("upload_seconds,stored", [(1.0, True), (8.0, False)])
def test_sigterm_lets_short_uploads_finish_and_aborts_long_ones(stack, store, draining_gateway, upload_seconds,
                                                                stored):
    s3 = client_for(stack, draining_gateway.url)
    key = f"ops/{uuid.uuid4().hex}"
    url = s3.generate_presigned_url("put_object", Params={"Bucket": stack.bucket, "Key": key}, ExpiresIn=300)
    outcome: dict = {}
    uploader = threading.Thread(target=_slow_put, args=(url, 4 * 1024 * 1024, upload_seconds, outcome))
    uploader.start()
    time.sleep(0.3)
    draining_gateway.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        # Draining: no longer ready (or no longer listening at all).
        urllib.request.urlopen(draining_gateway.admin_url + "/readyz", timeout=2)
    uploader.join(timeout=60)
    assert draining_gateway.process.wait(timeout=30) == 0
    if stored:
        assert outcome.get("response", b"").startswith(b"HTTP/1.1 200"), outcome
        assert store.head_object(Bucket=stack.bucket, Key=key)["ContentLength"] > 0
    else:
        with pytest.raises(ClientError):
            store.head_object(Bucket=stack.bucket, Key=key)


def test_endpoints_from_the_sdk_environment(stack, tmp_path):
    """No endpoints in the config: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL_KMS (the SDK's variables) decide."""
    config = gateway_config(stack.store_url, stack.key_arn, stack.access_key_id, stack.secret_access_key)
    config["upstream"] = {"region": "us-east-1"}
    env = {**store_env(stack.store_url), "AWS_ENDPOINT_URL_S3": stack.store_url}
    gateway = start_gateway(tmp_path, "sdk-env", config, env)
    try:
        s3 = client_for(stack, gateway.url)
        key = f"ops/{uuid.uuid4().hex}"
        s3.put_object(Bucket=stack.bucket, Key=key, Body=b"via the SDK's endpoint variables")
        assert s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == b"via the SDK's endpoint variables"
    finally:
        gateway.stop()
