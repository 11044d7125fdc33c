"""The newest boto3 release (its own locked environment, see tests/clients/) over HTTP and TLS.

The gateway's own environment pins botocore for aioboto3; users run whatever boto3 is newest, so that one is
exercised too, as a separate process. `make test` provides it; a plain `pytest` run without it skips.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCENARIOS = Path(__file__).parents[1] / "clients" / "boto3_scenarios.py"


@pytest.fixture(scope="module")
def clients_python() -> str:
    python = os.environ.get("ENVELOPE_CLIENTS_PYTHON")
    if not python:
        pytest.skip("ENVELOPE_CLIENTS_PYTHON not set (make test sets it)")
    assert Path(python).exists(), f"{python} missing: run make setup"
    return python


@pytest.mark.parametrize("transport", ["http", "tls"])
def test_newest_boto3_round_trips(clients_python, stack, transport):
    gateway = stack.http if transport == "http" else stack.tls
    args = [clients_python, str(SCENARIOS), gateway.url, stack.access_key_id, stack.secret_access_key, stack.bucket]
    if transport == "tls":
        args.append(stack.ca_file)
    result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all scenarios passed" in result.stdout
    print(result.stdout)
