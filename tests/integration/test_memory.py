"""Memory stays flat: the gateway's peak RSS does not grow with object size (64 MiB vs 1 GiB).

Runs against the in-repo benchmark sink (moto is far too slow for a GiB) with KMS from the session's moto.
Bodies are generated and hashed as they stream; nothing holds an object whole, on either side.
"""
from __future__ import annotations

import hashlib
import http.client
import subprocess
import sys
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
import pytest

from gateway.devstore import free_port, wait_until_serving
from tests.conftest import REGION, gateway_config, start_gateway, store_env

_CHUNK = b"\x5a" * (1 << 20)


def _peak_rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _stream_put(url: str, size: int) -> str:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=300)
    connection.putrequest("PUT", f"{parts.path}?{parts.query}", skip_accept_encoding=True)
    connection.putheader("Content-Length", str(size))
    connection.endheaders()
    digest, left = hashlib.sha256(), size
    while left:
        piece = _CHUNK[:min(len(_CHUNK), left)]
        connection.send(piece)
        digest.update(piece)
        left -= len(piece)
    response = connection.getresponse()
    assert response.status == 200, response.read()
    response.read()
    return digest.hexdigest()


def _stream_get(url: str) -> tuple[int, str]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=300)
    connection.request("GET", f"{parts.path}?{parts.query}")
    response = connection.getresponse()
    assert response.status == 200
    digest, total = hashlib.sha256(), 0
    while chunk := response.read(1 << 20):
        digest.update(chunk)
        total += len(chunk)
    return total, digest.hexdigest()


@pytest.fixture(scope="module")
def sink_gateway(stack, tmp_path_factory):
    port = free_port()
    sink = subprocess.Popen([sys.executable, "-m", "gateway.bench.sink", "--port", str(port)])
    wait_until_serving(f"http://127.0.0.1:{port}/probe/x", sink, 30, "sink")
    config = gateway_config(f"http://127.0.0.1:{port}", stack.key_arn, stack.access_key_id, stack.secret_access_key)
    gateway = start_gateway(tmp_path_factory.mktemp("memory"), "memory", config, store_env(stack.store_url))
    yield gateway
    gateway.stop()
    sink.terminate()
    sink.wait(timeout=10)


@pytest.mark.slow
def test_peak_rss_is_independent_of_object_size(stack, sink_gateway):
    client = boto3.client("s3", endpoint_url=sink_gateway.url, region_name=REGION, config=Config(signature_version="s3v4"),
                          aws_access_key_id=stack.access_key_id, aws_secret_access_key=stack.secret_access_key)
    peaks = {}
    for size in (64 * 1024 * 1024, 1024 * 1024 * 1024):
        key = f"memory-{size}"
        put_url = client.generate_presigned_url("put_object", Params={"Bucket": "sink", "Key": key})
        sent = _stream_put(put_url, size)
        get_url = client.generate_presigned_url("get_object", Params={"Bucket": "sink", "Key": key})
        received, digest = _stream_get(get_url)
        assert (received, digest) == (size, sent)
        peaks[size] = _peak_rss_bytes(sink_gateway.pid)
    small, large = peaks.values()
    print(f"gateway peak RSS: 64 MiB object {small / 2**20:.1f} MiB, 1 GiB object {large / 2**20:.1f} MiB")
    # 16x the bytes may not cost more than a few MiB of allocator noise.
    assert large - small < 16 * 1024 * 1024
