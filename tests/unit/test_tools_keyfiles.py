"""Key files and manifests of partner shares (gateway.tools.keyfiles): passphrases from the environment, files
that are not keys, and manifests written whole."""
from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway import errors
from gateway.format.signedshare import Manifest, SharedObject
from gateway.tools import keyfiles

PRIVATE = rsa.generate_private_key(65537, 2048)


def test_an_encrypted_private_key_opens_with_the_passphrase_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "partner-key.pem"
    path.write_bytes(PRIVATE.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.BestAvailableEncryption(b"s3cret passphrase")))
    monkeypatch.delenv(keyfiles.PASSPHRASE_ENV, raising=False)
    with pytest.raises(errors.InvalidArgument, match="is encrypted: give its passphrase"):
        keyfiles.load_private_key(str(path))  # no terminal under pytest: no prompt either
    monkeypatch.setenv(keyfiles.PASSPHRASE_ENV, "hunter2-not-it")
    with pytest.raises(errors.InvalidArgument, match="passphrase is wrong") as refused:
        keyfiles.load_private_key(str(path))
    assert "hunter2" not in refused.value.message
    monkeypatch.setenv(keyfiles.PASSPHRASE_ENV, "s3cret passphrase")
    assert keyfiles.load_private_key(str(path)).key_id.startswith("sha256:")


def test_missing_and_oversized_key_files_are_usage_errors(tmp_path):
    with pytest.raises(errors.InvalidArgument, match="Cannot read --recipient"):
        keyfiles.load_recipient(str(tmp_path / "absent.pem"))
    big = tmp_path / "big.pem"
    big.write_bytes(b"x" * (keyfiles.MAX_KEY_FILE_BYTES + 1))
    with pytest.raises(errors.InvalidArgument, match="too large"):
        keyfiles.load_signer_key(str(big))


def test_manifests_are_written_whole_and_read_back(tmp_path):
    manifest = Manifest("sha256:r", None, (SharedObject("b", "k", 1, 0, bytes(32), "H", "E", None),))
    path = tmp_path / "share.json"
    path.write_text("an earlier manifest")
    keyfiles.write_manifest(str(path), manifest)
    assert keyfiles.load_manifest(str(path)) == manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["share.json"]
    with pytest.raises(errors.InvalidArgument, match="Cannot write --manifest"):
        keyfiles.write_manifest(str(tmp_path / "missing-dir" / "share.json"), manifest)
