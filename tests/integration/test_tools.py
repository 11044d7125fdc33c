"""`envelope-gateway decrypt | wrap | unwrap` as a user runs them: subprocesses with only the store's and KMS's
credentials (the AWS SDK's default chain, as `store_env` gives the gateway), no gateway involved. Objects are
written through the real gateway; decrypting them from the store, or from a file plus the JSON that
`aws s3api head-object` prints, gives back the very bytes; tampering, truncation or another name fail with a
non-zero exit and leave no output file."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest

from gateway.s3.multipart_xml import multipart_part_count
from tests.conftest import REGION, STORE_KEY_ID, STORE_SECRET, store_env
from tests.integration.test_multipart import MiB, _upload

BIN = Path(sys.executable).parent


def _run(stack, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "envelope-gateway"), *args], env=store_env(stack.store_url), input=stdin,
                          capture_output=True, timeout=300)


def _head_json(stack, key: str, path: Path) -> Path:
    """What `aws s3api head-object` prints for the stored object (asked of the store itself)."""
    env = {**store_env(stack.store_url), "AWS_ENDPOINT_URL": stack.store_url}
    result = subprocess.run([str(BIN / "aws"), "s3api", "head-object", "--bucket", stack.bucket, "--key", key],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    path.write_text(result.stdout)
    return path


def _from_store(stack, key: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return _run(stack, "decrypt", "--bucket", stack.bucket, "--key", key, "--endpoint-url", stack.store_url,
                "--out", str(out), *extra)


def _from_files(stack, key: str, body: Path, head: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return _run(stack, "decrypt", "--in", str(body), "--metadata", str(head), "--bucket", stack.bucket, "--key", key,
                "--out", str(out), *extra)


def _stored_body(store, stack, key: str, path: Path) -> Path:
    path.write_bytes(store.get_object(Bucket=stack.bucket, Key=key)["Body"].read())
    return path


def _only(directory: Path, *names: str) -> None:
    """Nothing else in `directory`: no output file and no temporary file left behind."""
    assert sorted(p.name for p in directory.iterdir()) == sorted(names)


OBJECTS = {  # name: (part sizes or None for one PutObject, size)
    "empty": None, "one-byte": None, "multi-segment": None,
    "multipart-trailer-appended": [5 * MiB, 70_000], "multipart-trailer-a-part": [5 * MiB, 5 * MiB + 3],
}
SIZES = {"empty": 0, "one-byte": 1, "multi-segment": 9 * MiB + 7}


@pytest.fixture(scope="module")
def written(stack, s3, store) -> dict[str, tuple[str, bytes]]:
    """Every object of OBJECTS written through the gateway: name -> (key, plaintext)."""
    out = {}
    for name, parts in OBJECTS.items():
        key = f"tools/{uuid.uuid4().hex}/{name} ü.bin"
        if parts is None:
            data = os.urandom(SIZES[name])
            s3.put_object(Bucket=stack.bucket, Key=key, Body=data)
        else:
            chunks = [os.urandom(size) for size in parts]
            _upload(s3, stack.bucket, key, list(enumerate(chunks, start=1)))
            data = b"".join(chunks)
            etag = store.head_object(Bucket=stack.bucket, Key=key)["ETag"]
            assert multipart_part_count(etag) == len(parts) + (name == "multipart-trailer-a-part")
        out[name] = key, data
    return out


@pytest.mark.parametrize("name", OBJECTS)
def test_decrypt_from_the_store(stack, written, tmp_path, name):
    key, data = written[name]
    result = _from_store(stack, key, tmp_path / "plain.bin")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "plain.bin").read_bytes() == data
    _only(tmp_path, "plain.bin")


@pytest.mark.parametrize("name", OBJECTS)
def test_decrypt_from_a_file_and_head_object_json(stack, store, written, tmp_path, name):
    key, data = written[name]
    body = _stored_body(store, stack, key, tmp_path / "stored.bin")
    head = _head_json(stack, key, tmp_path / "head.json")
    result = _from_files(stack, key, body, head, tmp_path / "plain.bin")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "plain.bin").read_bytes() == data


def test_decrypt_to_standard_output(stack, written):
    key, data = written["multi-segment"]
    result = _run(stack, "decrypt", "--bucket", stack.bucket, "--key", key, "--endpoint-url", stack.store_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == data


def _flip_stored_byte(stack, store, key: str, at: int) -> None:
    """Flip one byte of the stored object in place, around the gateway, keeping its metadata."""
    stored = store.get_object(Bucket=stack.bucket, Key=key)
    body = bytearray(stored["Body"].read())
    body[at] ^= 0x01
    store.put_object(Bucket=stack.bucket, Key=key, Body=bytes(body), Metadata=stored["Metadata"])


@pytest.mark.parametrize("flip_at", [0, -1], ids=["first-byte", "last-byte"])
def test_a_tampered_object_fails_and_leaves_no_output(stack, s3, store, tmp_path, flip_at):
    key = f"tools/{uuid.uuid4().hex}/tampered"
    s3.put_object(Bucket=stack.bucket, Key=key, Body=os.urandom(3 * 65536 + 5))
    _flip_stored_byte(stack, store, key, flip_at)
    out = tmp_path / "plain.bin"
    out.write_bytes(b"an earlier file")
    result = _from_store(stack, key, out)
    assert result.returncode == 1, result.stderr
    assert b"integrity check failed" in result.stderr
    assert out.read_bytes() == b"an earlier file"  # untouched
    _only(tmp_path, "plain.bin")


def test_a_tampered_or_truncated_file_fails_and_leaves_no_output(stack, store, written, tmp_path):
    key, _ = written["multipart-trailer-appended"]
    body = _stored_body(store, stack, key, tmp_path / "stored.bin")
    head = _head_json(stack, key, tmp_path / "head.json")
    stored = body.read_bytes()
    body.write_bytes(stored[:100] + bytes([stored[100] ^ 1]) + stored[101:])
    result = _from_files(stack, key, body, head, tmp_path / "plain.bin")
    assert result.returncode == 1 and b"failed authentication" in result.stderr, result.stderr
    body.write_bytes(stored[:-65552])
    result = _from_files(stack, key, body, head, tmp_path / "plain.bin")
    assert result.returncode == 1 and b"truncated" in result.stderr, result.stderr
    _only(tmp_path, "stored.bin", "head.json")


def test_another_bucket_or_key_is_refused_by_kms(stack, store, written, tmp_path):
    key, _ = written["one-byte"]
    body = _stored_body(store, stack, key, tmp_path / "stored.bin")
    head = _head_json(stack, key, tmp_path / "head.json")
    for bucket, name in ((stack.bucket, key + "x"), ("another-bucket", key)):
        result = _run(stack, "decrypt", "--in", str(body), "--metadata", str(head), "--bucket", bucket, "--key", name,
                      "--out", str(tmp_path / "plain.bin"))
        assert result.returncode == 1, result.stderr
        assert b"does not belong to this bucket and key" in result.stderr
    # An object copied around the gateway (metadata and body together) fails the same way under its new name.
    copy = key + ".copy"
    store.copy_object(Bucket=stack.bucket, Key=copy, CopySource={"Bucket": stack.bucket, "Key": key})
    assert _from_store(stack, copy, tmp_path / "plain.bin").returncode == 1
    _only(tmp_path, "stored.bin", "head.json")


def test_pinning_the_kms_key(stack, written, tmp_path):
    key, data = written["one-byte"]
    result = _from_store(stack, key, tmp_path / "plain.bin", "--kms-key-id", stack.key_arn)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "plain.bin").read_bytes() == data
    other = _kms(stack).create_key()["KeyMetadata"]["KeyId"]
    result = _from_store(stack, key, tmp_path / "other.bin", "--kms-key-id", other)
    assert result.returncode == 3 and b"No usable wrapped key" in result.stderr, result.stderr
    _only(tmp_path, "plain.bin")


def test_what_cannot_be_decrypted_says_why(stack, store, tmp_path):
    plain = f"tools/{uuid.uuid4().hex}/plain"
    store.put_object(Bucket=stack.bucket, Key=plain, Body=b"written around the gateway")
    result = _from_store(stack, plain, tmp_path / "out")
    assert result.returncode == 3 and b"no envelope-header" in result.stderr, result.stderr
    result = _from_store(stack, plain + "-missing", tmp_path / "out")
    assert result.returncode == 4, result.stderr
    (tmp_path / "head.json").write_text("{not json")
    result = _from_files(stack, plain, tmp_path / "head.json", tmp_path / "head.json", tmp_path / "out")
    assert result.returncode == 2 and b"not JSON" in result.stderr, result.stderr
    result = _run(stack, "decrypt", "--bucket", stack.bucket, "--key", plain, "--in", "x")
    assert result.returncode == 2 and b"go together" in result.stderr
    _only(tmp_path, "head.json")


def _kms(stack):
    return boto3.client("kms", endpoint_url=stack.store_url, region_name=REGION, aws_access_key_id=STORE_KEY_ID,
                        aws_secret_access_key=STORE_SECRET)


# --- wrap / unwrap ---------------------------------------------------------------------------------------------


def test_wrap_unwrap_round_trip(stack):
    secret = os.urandom(4095)  # the largest accepted, any bytes (newlines included)
    wrapped = _run(stack, "wrap", "--key-id", stack.key_arn, "--context", "app=billing", "--context", "env=prod",
                   stdin=secret)
    assert wrapped.returncode == 0, wrapped.stderr
    document = json.loads(wrapped.stdout)
    assert document["format"] == "envelope-gateway/wrapped-secret/v1" and document["key_id"] == stack.key_arn
    assert document["encryption_context"] == {"app": "billing", "env": "prod"}
    assert secret not in wrapped.stdout and not wrapped.stderr
    unwrapped = _run(stack, "unwrap", "--context", "env=prod", "--context", "app=billing", stdin=wrapped.stdout)
    assert unwrapped.returncode == 0, unwrapped.stderr
    assert unwrapped.stdout == secret and not unwrapped.stderr
    pinned = _run(stack, "unwrap", "--key-id", stack.key_arn, "--context", "env=prod", "--context", "app=billing",
                  stdin=wrapped.stdout)
    assert pinned.stdout == secret


def test_unwrap_with_another_context_or_key_fails(stack):
    secret = b"token-0123456789"
    wrapped = _run(stack, "wrap", "--key-id", stack.key_arn, "--context", "app=billing", stdin=secret).stdout
    for args in (["--context", "app=payroll"], [], ["--context", "app=billing", "--context", "env=prod"]):
        result = _run(stack, "unwrap", *args, stdin=wrapped)
        assert result.returncode == 1, (args, result.stderr)
        assert b"KMS refused to unwrap" in result.stderr and b"app" in result.stderr
        assert result.stdout == b"" and secret not in result.stderr
    # Pinned to another key: AWS KMS answers IncorrectKeyException (exit 1), moto AccessDeniedException (exit 4).
    other_key = _kms(stack).create_key()["KeyMetadata"]["Arn"]
    result = _run(stack, "unwrap", "--context", "app=billing", "--key-id", other_key, stdin=wrapped)
    assert result.returncode in (1, 4) and result.stdout == b"" and secret not in result.stderr


def test_wrap_refuses_4096_bytes_and_more(stack):
    for size in (4096, 5000):
        result = _run(stack, "wrap", "--key-id", stack.key_arn, stdin=b"s" * size)
        assert result.returncode == 2 and b"below 4 KiB" in result.stderr, result.stderr
        assert result.stdout == b"" and b"sss" not in result.stderr
