"""The compatibility matrix (`make compat`): every real client × every scenario against real gateways (HTTP and
TLS) in front of moto server. One test per cell; a client's driver runs once for all its cells."""
from __future__ import annotations

import pytest

from matrix import MATRIX, ROWS, SCENARIOS, Row

pytestmark = pytest.mark.timeout(1200)


@pytest.fixture(scope="session")
def tampered_key(stack, store, s3):
    """A small object written through the gateway, then one ciphertext byte flipped in the store: its only segment
    fails authentication before any byte is sent, so every client must see a 5xx and no data."""
    key = "compat/tampered"
    s3.put_object(Bucket=stack.bucket, Key=key, Body=b"secret" * 1000)
    stored = store.get_object(Bucket=stack.bucket, Key=key)
    body = bytearray(stored["Body"].read())
    body[-20] ^= 0x01
    store.put_object(Bucket=stack.bucket, Key=key, Body=bytes(body), Metadata=stored["Metadata"])
    return key


@pytest.fixture(scope="session")
def run_row(stack, tampered_key, tmp_path_factory):
    def run(row: Row):
        gateway = stack.tls if row.transport == "tls" else stack.http
        spec = {"endpoint": gateway.url, "region": "us-east-1", "access_key_id": stack.access_key_id,
                "secret_access_key": stack.secret_access_key, "bucket": stack.bucket,
                "prefix": f"compat/{row.id}/", "ca_file": stack.ca_file if row.transport == "tls" else None,
                "tampered_key": tampered_key}
        return MATRIX.run(row, spec, tmp_path_factory.mktemp(row.id))
    return run


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_cell(row, scenario, run_row):
    cell = run_row(row)[scenario]
    if cell.status == "n/a":
        pytest.skip(f"{row.label}: {cell.detail}")
    assert cell.status == "pass", f"{row.label} / {scenario}: {cell.detail}"
