"""The offline tools' local pieces: the wrapped-secret form and its limits, the output that appears only when
complete, the exit codes, and reads from the store pinned to one ETag."""
from __future__ import annotations

import io
import json

import pytest
from botocore.exceptions import ClientError

from gateway import errors
from gateway.tools.exits import EXIT_INTEGRITY, EXIT_UNAVAILABLE, EXIT_UNSUPPORTED, EXIT_USAGE, exit_code
from gateway.tools.output import plaintext_output
from gateway.tools.secrets import FORMAT, MAX_SECRET_BYTES, WrappedSecret, parse_context, read_secret
from gateway.tools.sources import StoredObject, StoreBody


def test_wrapped_form_round_trip_and_shape():
    secret = WrappedSecret("arn:aws:kms:us-east-1:1:key/k", {"app": "billing"}, b"\x01\x02blob")
    text = secret.encode()
    assert text.endswith("\n") and text.count("\n") == 1
    assert json.loads(text) == {"format": FORMAT, "key_id": "arn:aws:kms:us-east-1:1:key/k",
                                "encryption_context": {"app": "billing"}, "ciphertext": "AQJibG9i"}
    assert WrappedSecret.decode(text.encode()) == secret


@pytest.mark.parametrize("text, error", [
    (b"not json", errors.InvalidArgument),
    (b"[]", errors.InvalidArgument),
    (b'{"format": "envelope-gateway/wrapped-secret/v9"}', errors.UnsupportedFormat),
    (json.dumps({"format": FORMAT, "key_id": "k", "encryption_context": {}}).encode(), errors.InvalidArgument),
    (json.dumps({"format": FORMAT, "key_id": "k", "encryption_context": {}, "ciphertext": "a b"}).encode(),
     errors.InvalidArgument),
    (b" " * (64 * 1024 + 1), errors.InvalidArgument),
])
def test_wrapped_form_refusals(text, error):
    with pytest.raises(error):
        WrappedSecret.decode(text)


def test_context_arguments():
    assert parse_context(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    for bad in (["a"], ["=1"], ["a=1", "a=2"]):
        with pytest.raises(errors.InvalidArgument):
            parse_context(bad)


def test_secret_size_limits():
    assert MAX_SECRET_BYTES == 4095
    assert read_secret(io.BytesIO(b"s" * 4095)) == b"s" * 4095
    for size in (4096, 10_000):
        with pytest.raises(errors.InvalidArgument, match="4096 bytes or more") as refused:
            read_secret(io.BytesIO(b"s" * size))
        assert "sss" not in refused.value.message
    with pytest.raises(errors.InvalidArgument, match="empty"):
        read_secret(io.BytesIO(b""))


def test_output_file_appears_only_when_complete(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"earlier")
    with pytest.raises(errors.TamperedCiphertext):
        with plaintext_output(str(target)) as out:
            out.write(b"a true prefix")
            raise errors.TamperedCiphertext()
    assert target.read_bytes() == b"earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]  # no temporary file left behind
    with plaintext_output(str(target)) as out:
        out.write(b"whole")
    assert target.read_bytes() == b"whole"
    assert target.stat().st_mode & 0o077 == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_output_in_a_missing_directory_is_a_usage_error(tmp_path):
    with pytest.raises(errors.InvalidArgument, match="--out"):
        with plaintext_output(str(tmp_path / "nope" / "out.bin")):
            pass


def test_exit_codes():
    assert exit_code(errors.TamperedCiphertext()) == EXIT_INTEGRITY == 1
    assert exit_code(errors.InvalidArgument()) == EXIT_USAGE == 2
    assert exit_code(errors.NotEncrypted()) == exit_code(errors.UnsupportedFormat()) == EXIT_UNSUPPORTED == 3
    for error in (errors.KMSError(), errors.KMSAccessDenied(), errors.NoSuchKey(), errors.UpstreamError(),
                  errors.SlowDown()):
        assert exit_code(error) == EXIT_UNAVAILABLE == 4


# --- reading from the store ------------------------------------------------------------------------------------
class _FakeS3:
    """Records GetObject calls; answers with `body`, or with the error code given."""

    def __init__(self, body: bytes, error: str | None = None) -> None:
        self.body, self.error, self.calls = body, error, []

    def get_object(self, **params):
        self.calls.append(params)
        if self.error:
            raise ClientError({"Error": {"Code": self.error, "Message": "echoes whatever"}}, "GetObject")
        return {"Body": io.BytesIO(self.body)}


def test_every_store_read_is_pinned_to_the_etag_head_object_returned():
    s3 = _FakeS3(b"0123456789")
    body = StoreBody(s3, "b", "k", StoredObject({}, '"etag-1"', 10))
    assert body.size_bytes == 10
    assert body.stream().read(100) == b"0123456789"
    with pytest.raises(errors.UpstreamError, match="byte range"):  # a store that ignored the Range
        body.tail(4)
    assert [call.get("IfMatch") for call in s3.calls] == ['"etag-1"', '"etag-1"']
    assert s3.calls[1]["Range"] == "bytes=-4"


@pytest.mark.parametrize("code, error, exit", [("PreconditionFailed", errors.PreconditionFailed, 4),
                                                ("NoSuchKey", errors.NoSuchKey, 4),
                                                ("AccessDenied", errors.AccessDenied, 4)])
def test_store_errors(code, error, exit):
    with pytest.raises(error) as raised:
        StoreBody(_FakeS3(b"", code), "b", "k", StoredObject({}, '"e"', 0)).stream()
    assert "echoes" not in raised.value.message
    assert exit_code(raised.value) == exit
