"""Partner shares against moto server (docs/KEYS.md "Sharing with partners"): objects written through the real
gateway (one request, multipart, and a bucket-key bucket) are shared with `envelope-gateway share` to RSA keys
made here; the partner decrypts them with `decrypt --private-key` while KMS is unreachable (a closed port), from
the store and from files; signed shares are verified before anything is decrypted, and tampering with the
signature, the ciphertext or the entry writes nothing. The gateway keeps serving shared objects."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import uuid
from pathlib import Path

import boto3
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from gateway.devstore import free_port
from gateway.format.envelope import WrappedKey, parse_metadata
from gateway.format.partner import SCHEME_RSA_OAEP, Recipient, oaep_label
from gateway.tools.rewrite import Outcome, rewrite_envelope
from tests.conftest import (REGION, STORE_KEY_ID, STORE_SECRET, client_for, gateway_config, start_gateway,
                            store_env)
from tests.integration.test_multipart import MiB, _upload
from tests.integration.test_tools import BIN, _only

BK_BUCKET = "pk-partners"


def _owner(stack, *args: str) -> subprocess.CompletedProcess:
    """A tool run by the owner: the store's and KMS's credentials."""
    return subprocess.run([str(BIN / "envelope-gateway"), *args], env=store_env(stack.store_url),
                          capture_output=True, timeout=300)


def _partner(stack, *args: str) -> subprocess.CompletedProcess:
    """A tool run by the partner: read access to the store, and no KMS at all (its endpoint is a closed port)."""
    env = {**store_env(stack.store_url), "AWS_ENDPOINT_URL_KMS": f"http://127.0.0.1:{free_port()}"}
    return subprocess.run([str(BIN / "envelope-gateway"), *args], env=env, capture_output=True, timeout=300)


def _share(stack, bucket: str, key: str, recipient: Path, *extra: str) -> subprocess.CompletedProcess:
    return _owner(stack, "share", "--bucket", bucket, "--key", key, "--recipient", str(recipient),
                  "--endpoint-url", stack.store_url, "--kms-key-id", stack.key_arn, *extra)


def _decrypt(stack, bucket: str, key: str, private: Path, out: Path | None, *extra: str):
    return _partner(stack, "decrypt", "--bucket", bucket, "--key", key, "--endpoint-url", stack.store_url,
                    "--private-key", str(private), *(["--out", str(out)] if out else []), *extra)


def _write_key(directory: Path, name: str, private) -> tuple[Path, Path]:
    """(private PEM, public PEM) files."""
    private_path, public_path = directory / f"{name}-key.pem", directory / f"{name}.pem"
    private_path.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    public_path.write_bytes(private.public_key().public_bytes(serialization.Encoding.PEM,
                                                              serialization.PublicFormat.SubjectPublicKeyInfo))
    return private_path, public_path


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    directory = tmp_path_factory.mktemp("partner-keys")
    return {bits: _write_key(directory, f"partner-{bits}", rsa.generate_private_key(65537, int(bits)))
            for bits in ("2048", "4096")}


@pytest.fixture(scope="module")
def bk_gateway(stack, store, tmp_path_factory):
    store.create_bucket(Bucket=BK_BUCKET)
    config = gateway_config(stack.store_url, stack.key_arn, stack.access_key_id, stack.secret_access_key)
    config["kms"]["bucket_keys"] = {"buckets": [BK_BUCKET]}
    gateway = start_gateway(tmp_path_factory.mktemp("partners-bk"), "partners-bk", config,
                            store_env(stack.store_url))
    yield gateway
    gateway.stop()


OBJECTS = {"one-request": 3 * 65536 + 5, "multipart": [5 * MiB, 70_000], "bucket-key": 100_000}


@pytest.fixture(scope="module")
def written(stack, s3, store, bk_gateway) -> dict[str, tuple[str, str, bytes]]:
    """name -> (bucket, key, plaintext), written through a gateway."""
    out = {}
    for name, layout in OBJECTS.items():
        key = f"partners/{uuid.uuid4().hex}/{name} é.bin"
        if name == "multipart":
            chunks = [os.urandom(size) for size in layout]
            _upload(s3, stack.bucket, key, list(enumerate(chunks, start=1)))
            out[name] = stack.bucket, key, b"".join(chunks)
        elif name == "bucket-key":
            data = os.urandom(layout)
            client_for(stack, bk_gateway.url).put_object(Bucket=BK_BUCKET, Key=key, Body=data)
            assert store.head_object(Bucket=BK_BUCKET, Key=key)["Metadata"]["envelope-key-0"].startswith(
                "kms-bucket-key;")
            out[name] = BK_BUCKET, key, data
        else:
            data = os.urandom(layout)
            s3.put_object(Bucket=stack.bucket, Key=key, Body=data)
            out[name] = stack.bucket, key, data
    return out


def _entries(store, bucket: str, key: str) -> list[WrappedKey]:
    return parse_metadata(store.head_object(Bucket=bucket, Key=key)["Metadata"])[1]


@pytest.mark.parametrize("name", OBJECTS)
def test_shared_objects_decrypt_offline_for_each_partner(stack, store, written, keys, tmp_path, name):
    bucket, key, data = written[name]
    etag = store.head_object(Bucket=bucket, Key=key)["ETag"]
    for bits, (private, public) in keys.items():
        result = _share(stack, bucket, key, public)
        assert result.returncode == 0, result.stderr
        assert b"shared s3://" in result.stderr
        out = tmp_path / f"plain-{bits}.bin"
        result = _decrypt(stack, bucket, key, private, out)
        assert result.returncode == 0, result.stderr
        assert out.read_bytes() == data
    entries = _entries(store, bucket, key)
    assert [e.scheme for e in entries][1:] == [SCHEME_RSA_OAEP] * 2
    assert {len(e.blob) for e in entries[1:]} == {256, 512}
    # The body and the ETag (its -M) are the same: the partner entries are metadata only.
    assert store.head_object(Bucket=bucket, Key=key)["ETag"] == etag
    # From a file and its head-object JSON, as any S3 client fetches them.
    body = tmp_path / "stored.bin"
    body.write_bytes(store.get_object(Bucket=bucket, Key=key)["Body"].read())
    head = tmp_path / "head.json"
    head.write_text(json.dumps(store.head_object(Bucket=bucket, Key=key), default=str))
    result = _partner(stack, "decrypt", "--in", str(body), "--metadata", str(head), "--bucket", bucket, "--key", key,
                      "--private-key", str(keys["4096"][0]), "--out", str(tmp_path / "from-file.bin"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "from-file.bin").read_bytes() == data


def test_the_gateway_still_serves_shared_objects(stack, s3, written, keys):
    for bucket, key, data in written.values():
        if bucket != stack.bucket:
            continue
        assert _share(stack, bucket, key, keys["2048"][1]).returncode == 0
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data
        assert s3.get_object(Bucket=bucket, Key=key, Range="bytes=70000-70099")["Body"].read() == data[70000:70100]
        head = s3.head_object(Bucket=bucket, Key=key)
        assert head["ContentLength"] == len(data) and not any(n.startswith("envelope") for n in head["Metadata"])
        copy = key + ".copy"
        s3.copy_object(Bucket=bucket, Key=copy, CopySource={"Bucket": bucket, "Key": key})
        assert s3.get_object(Bucket=bucket, Key=copy)["Body"].read() == data


def test_sharing_again_adds_nothing(stack, s3, store, keys):
    key = f"partners/{uuid.uuid4().hex}/again"
    s3.put_object(Bucket=stack.bucket, Key=key, Body=b"x" * 1000)
    assert _share(stack, stack.bucket, key, keys["2048"][1]).returncode == 0
    before = store.head_object(Bucket=stack.bucket, Key=key)
    result = _share(stack, stack.bucket, key, keys["2048"][1])
    assert result.returncode == 0 and b"already shared" in result.stderr, result.stderr
    after = store.head_object(Bucket=stack.bucket, Key=key)
    assert after["Metadata"] == before["Metadata"] and after["LastModified"] == before["LastModified"]
    assert len(_entries(store, stack.bucket, key)) == 2


def test_sharing_a_prefix_skips_foreign_objects_and_gateway_state(stack, s3, store, keys, tmp_path):
    bucket = f"partners-prefix-{uuid.uuid4().hex[:8]}"
    store.create_bucket(Bucket=bucket)
    bodies = {f"reports/{i}.csv": os.urandom(1000 * i) for i in range(3)}
    for key, body in bodies.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    store.put_object(Bucket=bucket, Key="reports/foreign.txt", Body=b"not through the gateway")
    store.put_object(Bucket=bucket, Key=".envelope-gateway/uploads/x/state", Body=b"{}")
    result = _owner(stack, "share", "--bucket", bucket, "--prefix", "", "--recipient", str(keys["2048"][1]),
                    "--endpoint-url", stack.store_url, "--manifest", str(tmp_path / "share.json"))
    assert result.returncode == 0, result.stderr
    assert b"skipped s3://" + bucket.encode() + b"/reports/foreign.txt" in result.stderr
    assert b".envelope-gateway" not in result.stderr
    manifest = json.loads((tmp_path / "share.json").read_text())
    assert sorted(o["key"] for o in manifest["objects"]) == sorted(bodies)
    assert manifest["signer"] is None and all(o["signature"] is None for o in manifest["objects"])
    assert store.head_object(Bucket=bucket, Key=".envelope-gateway/uploads/x/state")["Metadata"] == {}
    for key, body in bodies.items():
        assert _decrypt(stack, bucket, key, keys["2048"][0], tmp_path / "p").returncode == 0
        assert (tmp_path / "p").read_bytes() == body


@pytest.mark.parametrize("kind", ["rsa-1024", "ec-p256", "private-key"])
def test_unfit_partner_keys_are_refused(stack, written, tmp_path, kind):
    bucket, key, _ = written["one-request"]
    if kind == "private-key":
        path = _write_key(tmp_path, kind, rsa.generate_private_key(65537, 2048))[0]
    else:
        key_object = rsa.generate_private_key(65537, 1024) if kind == "rsa-1024" else ec.generate_private_key(
            ec.SECP256R1())
        path = _write_key(tmp_path, kind, key_object)[1]
    result = _share(stack, bucket, key, path)
    assert result.returncode == 2, result.stderr
    assert {"rsa-1024": b"1024 bits", "ec-p256": b"not an RSA key", "private-key": b"not a PEM public key"}[
        kind] in result.stderr


def _plant(store, bucket: str, key: str, entry: WrappedKey, replace: bool = False) -> None:
    """Add `entry` (or put it in place of the partner entries), changing nothing else — not the ETag: as someone
    with write access to the store could."""
    def update(header, entries):
        return [*(e for e in entries if not (replace and e.scheme == SCHEME_RSA_OAEP)), entry]

    etag = store.head_object(Bucket=bucket, Key=key)["ETag"]
    assert rewrite_envelope(store, bucket, key, update) is Outcome.REWRITTEN
    assert store.head_object(Bucket=bucket, Key=key)["ETag"] == etag


def test_pkcs1_v15_entries_and_wrong_keys_fail_clearly(stack, s3, store, keys, tmp_path):
    key = f"partners/{uuid.uuid4().hex}/v15"
    s3.put_object(Bucket=stack.bucket, Key=key, Body=os.urandom(5000))
    private = serialization.load_pem_private_key(keys["2048"][0].read_bytes(), None)
    recipient = Recipient(private.public_key())
    # A v1.5 blob of the right DEK would still be refused: here, of any 32 bytes, under the partner's key id.
    v15 = private.public_key().encrypt(os.urandom(32), padding.PKCS1v15())
    _plant(store, stack.bucket, key, WrappedKey(SCHEME_RSA_OAEP, recipient.key_id, v15))
    result = _decrypt(stack, stack.bucket, key, keys["2048"][0], tmp_path / "p")
    assert result.returncode == 1 and b"not RSA-OAEP" in result.stderr, result.stderr
    # A key the object was not shared with: no usable copy, exit 3.
    result = _decrypt(stack, stack.bucket, key, keys["4096"][0], tmp_path / "p")
    assert result.returncode == 3 and b"No usable wrapped key" in result.stderr, result.stderr
    assert b"partner copies for the private key sha256:" in result.stderr
    _only(tmp_path)


def test_an_object_moved_around_the_gateway_does_not_unwrap_under_its_new_name(stack, s3, store, keys, tmp_path):
    key = f"partners/{uuid.uuid4().hex}/original"
    s3.put_object(Bucket=stack.bucket, Key=key, Body=os.urandom(5000))
    assert _share(stack, stack.bucket, key, keys["2048"][1]).returncode == 0
    moved = key + "-moved"
    store.copy_object(Bucket=stack.bucket, Key=moved, CopySource={"Bucket": stack.bucket, "Key": key})
    result = _decrypt(stack, stack.bucket, moved, keys["2048"][0], tmp_path / "p")
    assert result.returncode == 1 and b"integrity check failed" in result.stderr, result.stderr
    _only(tmp_path)


def test_a_share_that_does_not_fit_the_metadata_is_refused(stack, s3, store, keys):
    key = f"partners/{uuid.uuid4().hex}/full"
    s3.put_object(Bucket=stack.bucket, Key=key, Body=b"data", Metadata={"notes": "n" * 995})
    before = store.head_object(Bucket=stack.bucket, Key=key)
    result = _share(stack, stack.bucket, key, keys["4096"][1])
    assert result.returncode == 3, result.stderr
    assert b"does not fit" in result.stderr and b"2048" in result.stderr
    assert store.head_object(Bucket=stack.bucket, Key=key)["Metadata"] == before["Metadata"]
    # A 2048-bit partner still fits.
    assert _share(stack, stack.bucket, key, keys["2048"][1]).returncode == 0


def test_objects_not_written_through_the_gateway_are_refused(stack, store, keys):
    key = f"partners/{uuid.uuid4().hex}/plain"
    store.put_object(Bucket=stack.bucket, Key=key, Body=b"plain")
    result = _share(stack, stack.bucket, key, keys["2048"][1])
    assert result.returncode == 3 and b"not written through the gateway" in result.stderr, result.stderr


# --- signed shares ------------------------------------------------------------------------------------------------
def _kms(stack):
    return boto3.client("kms", endpoint_url=stack.store_url, region_name=REGION, aws_access_key_id=STORE_KEY_ID,
                        aws_secret_access_key=STORE_SECRET)


SIGNING_ALGORITHMS = {"RSA_2048": "RSASSA_PSS_SHA_256", "ECC_NIST_P256": "ECDSA_SHA_256"}


@pytest.fixture(scope="module", params=sorted(SIGNING_ALGORITHMS))
def signing_key(request, stack) -> tuple[str, str]:
    """(ARN, key spec) of a KMS asymmetric signing key."""
    return _kms(stack).create_key(KeyUsage="SIGN_VERIFY", KeySpec=request.param)["KeyMetadata"]["Arn"], request.param


@pytest.fixture
def signed(stack, s3, keys, signing_key, tmp_path):
    """A multipart object shared with a signature: (key, plaintext, manifest path, signer public key path)."""
    key = f"partners/{uuid.uuid4().hex}/signed"
    chunks = [os.urandom(5 * MiB), os.urandom(1000)]
    _upload(s3, stack.bucket, key, list(enumerate(chunks, start=1)))
    manifest, verify_key = tmp_path / "share.json", tmp_path / "signer.pem"
    result = _share(stack, stack.bucket, key, keys["2048"][1], "--signing-key-id", signing_key[0],
                    "--manifest", str(manifest))
    assert result.returncode == 0, result.stderr
    result = _owner(stack, "export-signing-key", "--key-id", signing_key[0], "--out", str(verify_key))
    assert result.returncode == 0, result.stderr
    assert b"key id sha256:" in result.stderr
    outputs = tmp_path / "out"
    outputs.mkdir()
    return key, b"".join(chunks), manifest, verify_key, outputs


def _verified(stack, key: str, keys, manifest: Path, verify_key: Path, out: Path | None):
    return _decrypt(stack, stack.bucket, key, keys["2048"][0], out, "--verify-key", str(verify_key),
                    "--manifest", str(manifest))


def test_a_signed_share_verifies_before_it_decrypts(stack, store, keys, signed, signing_key):
    key, data, manifest, verify_key, outputs = signed
    document = json.loads(manifest.read_text())
    arn, spec = signing_key
    assert document["signer"]["kms_key_arn"] == arn and document["signer"]["algorithm"] == SIGNING_ALGORITHMS[spec]
    assert document["objects"][0]["part_count"] == 2  # the multipart layout's ETag -M is signed
    result = _verified(stack, key, keys, manifest, verify_key, outputs / "plain.bin")
    assert result.returncode == 0, result.stderr
    assert (outputs / "plain.bin").read_bytes() == data
    # `aws kms get-public-key` gives the same key (DER): either may be handed to the partner.
    der = _kms(stack).get_public_key(KeyId=arn)["PublicKey"]
    assert serialization.load_pem_public_key(verify_key.read_bytes()).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) == der


def test_a_tampered_signature_is_refused_and_nothing_is_written(stack, keys, signed):
    key, _, manifest, verify_key, outputs = signed
    document = json.loads(manifest.read_text())
    signature = bytearray(base64.b64decode(document["objects"][0]["signature"]))
    signature[len(signature) // 2] ^= 1
    document["objects"][0]["signature"] = base64.b64encode(bytes(signature)).decode()
    manifest.write_text(json.dumps(document))
    result = _verified(stack, key, keys, manifest, verify_key, None)  # to standard output: not one byte
    assert result.returncode == 1 and b"does not verify" in result.stderr, result.stderr
    assert result.stdout == b""
    document["objects"][0]["signature"] = None
    manifest.write_text(json.dumps(document))
    result = _verified(stack, key, keys, manifest, verify_key, outputs / "plain.bin")
    assert result.returncode == 1 and b"no signature" in result.stderr, result.stderr
    _only(outputs)


def test_tampered_ciphertext_is_refused_before_decrypting(stack, store, keys, signed):
    key, _, manifest, verify_key, outputs = signed
    stored = store.get_object(Bucket=stack.bucket, Key=key)
    body = bytearray(stored["Body"].read())
    # In part 2: a decrypt that did not verify first would write part 1's 5 MiB before failing there.
    body[5 * MiB + 16 * 80 + 10] ^= 1
    store.put_object(Bucket=stack.bucket, Key=key, Body=bytes(body), Metadata=stored["Metadata"])
    result = _verified(stack, key, keys, manifest, verify_key, None)
    assert result.returncode == 1 and b"the stored ciphertext differs" in result.stderr, result.stderr
    assert result.stdout == b""


def test_a_replaced_entry_is_refused_although_it_would_decrypt(stack, store, keys, signed):
    # Someone with store write access and the partner's public key swaps the entry for one of their own making:
    # a valid wrap of the right DEK here (the test knows it), so only the signature can tell.
    key, data, manifest, verify_key, outputs = signed
    entry = next(e for e in _entries(store, stack.bucket, key) if e.scheme == SCHEME_RSA_OAEP)
    private = serialization.load_pem_private_key(keys["2048"][0].read_bytes(), None)
    dek = private.decrypt(entry.blob, padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(),
                                                   oaep_label(stack.bucket, key)))
    _plant(store, stack.bucket, key, Recipient(private.public_key()).wrap(dek, stack.bucket, key), replace=True)
    result = _decrypt(stack, stack.bucket, key, keys["2048"][0], outputs / "unverified.bin")
    assert result.returncode == 0 and (outputs / "unverified.bin").read_bytes() == data  # decryptable...
    result = _verified(stack, key, keys, manifest, verify_key, outputs / "plain.bin")
    assert result.returncode == 1 and b"wrapped key differs" in result.stderr, result.stderr  # ...but not signed
    _only(outputs, "unverified.bin")


def test_a_manifest_verified_with_another_key_is_refused(stack, keys, signed, tmp_path):
    key, _, manifest, _, outputs = signed
    other = tmp_path / "other-signer.pem"
    other.write_bytes(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    result = _verified(stack, key, keys, manifest, other, outputs / "plain.bin")
    assert result.returncode == 1 and b"another key" in result.stderr, result.stderr
    _only(outputs)


def test_revoking_removes_the_entry_and_only_it(stack, s3, store, keys, tmp_path):
    key = f"partners/{uuid.uuid4().hex}/revoked"
    s3.put_object(Bucket=stack.bucket, Key=key, Body=b"r" * 3000)
    for bits in keys:
        assert _share(stack, stack.bucket, key, keys[bits][1]).returncode == 0
    result = _owner(stack, "share", "--revoke", "--bucket", stack.bucket, "--key", key, "--recipient",
                    str(keys["2048"][1]), "--endpoint-url", stack.store_url)
    assert result.returncode == 0 and b"revoked s3://" in result.stderr, result.stderr
    assert [len(e.blob) for e in _entries(store, stack.bucket, key) if e.scheme == SCHEME_RSA_OAEP] == [512]
    result = _decrypt(stack, stack.bucket, key, keys["2048"][0], tmp_path / "p")
    assert result.returncode == 3, result.stderr
    assert _decrypt(stack, stack.bucket, key, keys["4096"][0], tmp_path / "p").returncode == 0
    assert s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == b"r" * 3000
    again = _owner(stack, "share", "--revoke", "--bucket", stack.bucket, "--key", key, "--recipient",
                   str(keys["2048"][1]), "--endpoint-url", stack.store_url)
    assert again.returncode == 0 and b"not shared s3://" in again.stderr, again.stderr


def test_a_key_that_cannot_sign_is_refused(stack, keys, tmp_path):
    result = _owner(stack, "export-signing-key", "--key-id", stack.key_arn)  # the gateway's symmetric key
    assert result.returncode == 2 and result.stdout == b"", result.stderr
    assert b"cannot sign: its key usage is not SIGN_VERIFY" in result.stderr
    key = f"partners/{uuid.uuid4().hex}/unsigned"
    result = _share(stack, stack.bucket, key, keys["2048"][1], "--signing-key-id", stack.key_arn,
                    "--manifest", str(tmp_path / "share.json"))
    assert result.returncode == 2 and b"SIGN_VERIFY" in result.stderr, result.stderr
    _only(tmp_path)
