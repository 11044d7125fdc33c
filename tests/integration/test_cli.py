"""The README's worked example with the aws cli (installed from the lock), and the command line itself."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import REGION


def _aws(stack, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL=stack.http.url, AWS_ACCESS_KEY_ID=stack.access_key_id,
               AWS_SECRET_ACCESS_KEY=stack.secret_access_key, AWS_DEFAULT_REGION=REGION, AWS_MAX_ATTEMPTS="1")
    aws = Path(sys.executable).parent / "aws"
    return subprocess.run([str(aws), *args], env=env, capture_output=True, text=True, timeout=120)


def test_aws_cli_cp_ls_and_back(stack, tmp_path):
    source = tmp_path / "hello.txt"
    source.write_bytes(b"hello, envelope\n" * 1000)
    key = f"cli/{uuid.uuid4().hex}/hello.txt"
    result = _aws(stack, "s3", "cp", str(source), f"s3://{stack.bucket}/{key}")
    assert result.returncode == 0, result.stderr
    listing = _aws(stack, "s3", "ls", f"s3://{stack.bucket}/{key}")
    assert listing.returncode == 0 and " 16000 " in listing.stdout, listing.stdout
    target = tmp_path / "back.txt"
    result = _aws(stack, "s3", "cp", f"s3://{stack.bucket}/{key}", str(target))
    assert result.returncode == 0, result.stderr
    assert target.read_bytes() == source.read_bytes()
    result = _aws(stack, "s3", "rm", f"s3://{stack.bucket}/{key}")
    assert result.returncode == 0, result.stderr


def test_aws_cli_wrong_secret_is_signature_does_not_match(stack):
    env_stack = type("S", (), {**stack.__dict__, "secret_access_key": "wrong"})
    result = _aws(env_stack, "s3api", "head-bucket", "--bucket", stack.bucket)
    assert result.returncode != 0


def test_invalid_config_lists_every_problem_and_exits_2(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("listen: nowhere\nkms: {}\nclients: []\ntypo_key: 1\n")
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    for fragment in ("listen", "kms.key_id", "clients", "typo_key"):
        assert fragment in result.stderr


@pytest.mark.parametrize("command", ["serve", "check-config"])
def test_missing_config_file_is_a_config_error(command, tmp_path):
    result = subprocess.run([sys.executable, "-m", "gateway.cli", command, "--config", str(tmp_path / "nope.yaml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2


def test_dev_mode_prints_exports_that_work(tmp_path):
    import time

    import boto3

    from gateway.devstore import free_port

    port, store_port, admin_port = free_port(), free_port(), free_port()
    log = tmp_path / "dev.out"
    process = subprocess.Popen([sys.executable, "-m", "gateway.cli", "dev", "--port", str(port), "--store-port",
                                str(store_port), "--admin-port", str(admin_port)],
                               stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "ENVELOPE_BUCKET" not in log.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            time.sleep(0.2)
        exports = dict(line[len("export "):].split("=", 1) for line in log.read_text().splitlines()
                       if line.startswith("export "))
        for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                     "ENVELOPE_STORE_ENDPOINT_URL", "ENVELOPE_STORE_ACCESS_KEY_ID",
                     "ENVELOPE_STORE_SECRET_ACCESS_KEY", "ENVELOPE_ADMIN_URL", "ENVELOPE_BUCKET"):
            assert exports.get(name), name
        assert exports["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{port}"
        client = boto3.client("s3", endpoint_url=exports["AWS_ENDPOINT_URL"], region_name=exports["AWS_DEFAULT_REGION"],
                              aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=exports["AWS_SECRET_ACCESS_KEY"])
        client.put_object(Bucket=exports["ENVELOPE_BUCKET"], Key="dev.txt", Body=b"dev mode works")
        assert client.get_object(Bucket=exports["ENVELOPE_BUCKET"], Key="dev.txt")["Body"].read() == b"dev mode works"
        store = boto3.client("s3", endpoint_url=exports["ENVELOPE_STORE_ENDPOINT_URL"], region_name="us-east-1",
                             aws_access_key_id=exports["ENVELOPE_STORE_ACCESS_KEY_ID"],
                             aws_secret_access_key=exports["ENVELOPE_STORE_SECRET_ACCESS_KEY"])
        stored = store.get_object(Bucket=exports["ENVELOPE_BUCKET"], Key="dev.txt")["Body"].read()
        assert b"dev mode works" not in stored and len(stored) == len(b"dev mode works") + 16
    finally:
        process.terminate()
        process.wait(timeout=30)
