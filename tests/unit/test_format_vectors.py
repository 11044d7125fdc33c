"""Published vectors (tests/vectors, produced by an independent implementation of docs/FORMAT.md), checked in both
directions: encrypting reproduces the stored ciphertext and metadata; decrypting reproduces the plaintext; every
negative vector fails with the expected error at the expected step."""
from __future__ import annotations

import hashlib
import hmac
import importlib.util
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

from gateway import errors
from gateway.format.envelope import (
    WrappedKey,
    encryption_context,
    metadata_for,
    new_object_key,
    open_object_key,
    parse_metadata,
)
from gateway.format.segments import open_batch, seal_batch
from gateway.format.sizes import (
    SEALED_SEGMENT_SIZE_BYTES,
    ciphertext_size,
    covering_segments,
    plaintext_size,
    segment_count,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
POSITIVE = sorted(VECTORS.glob("v1-plaintext-*.json"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))


def _load(name: str) -> dict:
    return json.loads((VECTORS / f"{name}.json").read_text())


def _wrapped(vector: dict) -> list[WrappedKey]:
    return [WrappedKey(w["scheme"], w["key_id"], bytes.fromhex(w["blob"])) for w in vector["wrapped_keys"]]


def test_the_vector_set_is_complete():
    assert [int(p.stem.rsplit("-", 1)[1]) for p in POSITIVE] == [0, 1, 65535, 65536, 65537, 2 * 65536 + 5]


def test_files_are_what_the_generator_writes():
    spec = importlib.util.spec_from_file_location("vectors_generate", VECTORS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    files = module.build()
    assert sorted(files) == sorted(p.name for p in VECTORS.glob("*.json"))
    for name, text in files.items():
        assert (VECTORS / name).read_text() == text, f"{name} is stale: run tests/vectors/generate.py"


@pytest.mark.parametrize("path", POSITIVE, ids=lambda p: p.stem)
def test_encrypting_reproduces_the_vector(path):
    v = json.loads(path.read_text())
    header, key = new_object_key(bytes.fromhex(v["dek"]), salt=bytes.fromhex(v["salt"]))
    assert header.encode().hex() == v["header"]
    assert header.bound_bytes().hex() == v["intermediate"]["header_bound_0_36"]
    assert header.commitment.hex() == v["intermediate"]["commitment"]
    assert metadata_for(header, _wrapped(v)) == v["metadata"]
    assert encryption_context(v["bucket"], v["key"]) == v["encryption_context"]
    plaintext = bytes.fromhex(v["plaintext"])
    assert (ciphertext_size(len(plaintext)), segment_count(len(plaintext))) == (v["ciphertext_size"],
                                                                                 v["segment_count"])
    sealed = seal_batch(key, 0, plaintext, final=True)
    assert sealed == bytes.fromhex(v["ciphertext"])


@pytest.mark.parametrize("path", POSITIVE, ids=lambda p: p.stem)
def test_decrypting_reproduces_the_plaintext(path):
    v = json.loads(path.read_text())
    header, wrapped = parse_metadata(v["metadata"])
    assert header.encode().hex() == v["header"]
    assert wrapped == _wrapped(v)
    key = open_object_key(bytes.fromhex(v["dek"]), header)
    stored = bytes.fromhex(v["ciphertext"])
    plaintext = bytes.fromhex(v["plaintext"])
    n = plaintext_size(len(stored))
    assert n == v["plaintext_size"]
    span = covering_segments(0, n - 1, n)
    assert open_batch(key, 0, stored, span.final_segment) == plaintext
    # Segment by segment too, at the offsets and with the nonces the vector lists.
    for seg in v["segments"]:
        start = seg["stored_offset"]
        one = stored[start:start + seg["sealed_size"]]
        assert one[-16:].hex() == seg["tag"]
        assert open_batch(key, seg["index"], one, span.final_segment) == \
            plaintext[seg["index"] * 65536:seg["index"] * 65536 + seg["plaintext_size"]]


@pytest.mark.parametrize("path", POSITIVE, ids=lambda p: p.stem)
def test_intermediate_values_follow_rfc5869(path):
    """The spelled-out key schedule equals one-shot RFC 5869 HKDF, and the listed object key and nonces open the
    ciphertext with plain AES-GCM: what an independent decryptor would do."""
    v = json.loads(path.read_text())
    dek, salt, mid = bytes.fromhex(v["dek"]), bytes.fromhex(v["salt"]), v["intermediate"]
    assert hmac.new(salt, dek, hashlib.sha256).hexdigest() == mid["prk"]
    assert HKDF.extract(hashes.SHA256(), salt, dek).hex() == mid["prk"]
    for info, expected in ((mid["data_key_info"], mid["object_key"]), (mid["commitment_info"], mid["commitment"])):
        assert HKDF(hashes.SHA256(), 32, salt, bytes.fromhex(info)).derive(dek).hex() == expected
        assert HKDFExpand(hashes.SHA256(), 32, bytes.fromhex(info)).derive(bytes.fromhex(mid["prk"])).hex() == expected
    assert bytes.fromhex(mid["data_key_info"]) == b"envelope-gateway/v1/data-key" + bytes.fromhex(v["header"])[:36]
    assert bytes.fromhex(mid["commitment_info"]) == \
        b"envelope-gateway/v1/commitment" + bytes.fromhex(v["header"])[:36]
    aead = AESGCM(bytes.fromhex(mid["object_key"]))
    stored = bytes.fromhex(v["ciphertext"])
    opened = b"".join(aead.decrypt(bytes.fromhex(seg["nonce"]),
                                   stored[seg["stored_offset"]:seg["stored_offset"] + seg["sealed_size"]], b"")
                      for seg in v["segments"])
    assert opened.hex() == v["plaintext"]


# --- negative vectors -------------------------------------------------------------------------------------------
NEGATIVE = _load("v1-negative")["cases"]


def _apply(case: dict) -> tuple[dict[str, str], bytes, bytes]:
    base = _load(case["base"])
    meta = dict(base["metadata"])
    for name, value in case["metadata_changes"].items():
        if value is None:
            meta.pop(name, None)
        else:
            meta[name] = value
    dek = bytes.fromhex(case["dek"] or base["dek"])
    stored = bytearray(bytes.fromhex(base["ciphertext"]))
    for edit in case["ciphertext_edits"]:
        op = edit["op"]
        if op == "flip":
            stored[edit["offset"]] ^= 0x01
        elif op == "truncate":
            del stored[edit["length"]:]
        elif op in ("append_from", "splice_from"):
            piece = bytes.fromhex(_load(edit["vector"])["ciphertext"])[edit["start"]:edit["end"]]
            if op == "append_from":
                stored += piece
            else:
                stored[edit["start"]:edit["end"]] = piece
        elif op == "swap":
            (a0, a1), (b0, b1) = edit["a"], edit["b"]
            stored[a0:a1], stored[b0:b1] = stored[b0:b1], stored[a0:a1]
        else:
            raise AssertionError(f"unknown edit {op}")
    return meta, dek, bytes(stored)


def read_whole_object(meta: dict[str, str], dek: bytes, stored: bytes) -> tuple[str, bytes]:
    """The reading order of docs/FORMAT.md. Returns the plaintext, or raises (step, error)."""
    step = "metadata"
    try:
        header, _wrapped_keys = parse_metadata(meta)
        step = "size"
        try:
            n = plaintext_size(len(stored))
        except ValueError:
            raise errors.TamperedCiphertext("impossible stored size") from None
        step = "commitment"
        key = open_object_key(dek, header)
        step = "segment"
        span = covering_segments(0, n - 1, n)
        return step, bytes(open_batch(key, 0, stored[span.ciphertext_start:span.ciphertext_end + 1],
                                      span.final_segment))
    except errors.S3Error as exc:
        raise _Failed(step, exc) from exc


class _Failed(Exception):
    def __init__(self, step: str, error: errors.S3Error) -> None:
        super().__init__(step, type(error).__name__)
        self.step, self.error = step, error


@pytest.mark.parametrize("case", NEGATIVE, ids=[c["name"] for c in NEGATIVE])
def test_negative_vector_fails_as_specified(case):
    meta, dek, stored = _apply(case)
    with pytest.raises(_Failed) as failed:
        read_whole_object(meta, dek, stored)
    assert type(failed.value.error).__name__ == case["error"]
    assert failed.value.step == case["detected_by"]
    assert dek.hex() not in str(failed.value.error) and dek.hex() not in repr(failed.value.error)


def test_negative_vectors_cover_every_tamper_class():
    names = {c["name"] for c in NEGATIVE}
    for needed in ("flip-first-ciphertext-byte", "truncate-at-segment-boundary", "truncate-mid-segment",
                   "extend-by-a-segment", "reorder-segments", "segment-from-another-object", "wrong-data-key",
                   "header-version-2", "header-suite-2", "header-segment-size-2^20", "header-flag-multipart",
                   "header-salt-changed", "header-commitment-changed", "no-envelope-metadata"):
        assert needed in names
    # The unedited base vectors read fine through the same reader (the negatives fail for their edit only).
    for name in {c["base"] for c in NEGATIVE}:
        base = _load(name)
        step, plaintext = read_whole_object(base["metadata"], bytes.fromhex(base["dek"]),
                                            bytes.fromhex(base["ciphertext"]))
        assert plaintext.hex() == base["plaintext"]
    assert SEALED_SEGMENT_SIZE_BYTES == 65552  # the offsets in v1-negative.json assume it
