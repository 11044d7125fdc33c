"""Published vectors (tests/vectors, produced by an independent implementation of docs/FORMAT.md), checked in both
directions: encrypting reproduces the stored ciphertext and metadata; decrypting reproduces the plaintext; every
negative vector fails with the expected error at the expected step. Both layouts: one-request objects (§6) and the
multipart layout (§15)."""
from __future__ import annotations

import hashlib
import hmac
import importlib.util
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

from gateway import errors
from gateway.format import multipart as mp
from gateway.format.bucketkey import SCHEME_BUCKET_KEY, BucketKeyBlob, bucket_key_context, derive_dek, dek_info
from gateway.format.envelope import (
    FLAG_MULTIPART_LAYOUT,
    WrappedKey,
    encryption_context,
    header_value,
    metadata_for,
    new_multipart_keys,
    new_object_key,
    open_multipart_keys,
    open_object_key,
    parse_metadata,
)
from gateway.format.partner import SCHEME_RSA_OAEP, PartnerPrivateKey, Recipient, oaep_label
from gateway.format.segments import open_batch, seal_batch
from gateway.format.signedshare import Manifest, SharedObject, SignerPublicKey, verify_shared
from gateway.format.sizes import (
    SEALED_SEGMENT_SIZE_BYTES,
    ciphertext_size,
    covering_segments,
    plaintext_size,
    segment_count,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
POSITIVE = sorted(VECTORS.glob("v1-plaintext-*.json"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
MULTIPART = sorted(p for p in VECTORS.glob("v1-multipart-*.json") if p.stem != "v1-multipart-negative")


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


def read_whole_object(meta: dict[str, str], dek: bytes, stored: bytes,
                      etag_part_count: int | None = None) -> tuple[str, bytes]:
    """The reading order of docs/FORMAT.md (§9, or §15.7 when the header has the multipart flag). Returns the
    plaintext, or raises (step, error). etag_part_count: the `-M` of the store's ETag, None when it has none."""
    step = "metadata"
    try:
        header, _wrapped_keys = parse_metadata(meta)
        if header.flags & FLAG_MULTIPART_LAYOUT:
            return read_multipart_object(header, dek, stored, etag_part_count)
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


def read_multipart_object(header, dek: bytes, stored: bytes, etag_part_count: int | None) -> tuple[str, bytes]:
    """§15.7 with the gateway's functions: size from the ETag's M, commitment, the table from the last
    table_tail_size(M) bytes (what a reader fetches), the padding, then every part's segments. Without a `-M`
    suffix, the fallback: N from the last four bytes, and the table alone gives M and n."""
    step = "size"
    try:
        m = etag_part_count
        if m is not None:
            try:
                n = mp.plaintext_size(len(stored), m)
            except ValueError:
                raise errors.TamperedCiphertext("impossible stored size") from None
        step = "commitment"
        keys = open_multipart_keys(dek, header)
        step = "table"
        if m is None:
            table = mp.open_trailer(keys, stored, len(stored))
            n = table.plaintext_size
        else:
            table = mp.open_trailer(keys, stored[-mp.table_tail_size(m):], len(stored), m)
            assert table.plaintext_size == n  # the size check in open_trailer makes it so
        step = "padding"
        parts_end = sum(p.stored_size for p in table.parts)
        mp.check_padding(stored[parts_end:parts_end + mp.padding_size(table)])
        step = "segment"
        return step, _open_span(keys, stored, mp.covering_parts(0, n - 1, table))
    except errors.S3Error as exc:
        raise _Failed(step, exc) from exc


def _open_span(keys, stored: bytes, span: mp.MultipartSpan) -> bytes:
    out = bytearray()
    for ps in span.parts:
        window = stored[ps.stored_offset + ps.span.ciphertext_start:ps.stored_offset + ps.span.ciphertext_end + 1]
        opened = open_batch(keys.part_key(ps.part.number, ps.part.salt), ps.span.first_segment, window,
                            ps.span.final_segment, part_number=ps.part.number)
        out += opened[ps.span.skip_bytes:ps.span.skip_bytes + ps.span.length]
    return bytes(out)


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


# --- multipart layout (§15) -------------------------------------------------------------------------------------
def test_the_multipart_vector_set_is_complete():
    names = {p.stem for p in MULTIPART}
    assert names == {"v1-multipart-2-parts-trailer-appended", "v1-multipart-3-parts-trailer-part",
                     "v1-multipart-1-part-trailer-part", "v1-multipart-1-empty-part-trailer-appended"}
    layouts = {json.loads(p.read_text())["stored_part_count"] - json.loads(p.read_text())["part_count"]
               for p in MULTIPART}
    assert layouts == {0, 1}  # the trailer appended to the last part (M = N) and a part of its own (M = N + 1)


def _entries(v: dict) -> tuple[mp.PartEntry, ...]:
    return tuple(mp.PartEntry(p["number"], p["plaintext_size"], bytes.fromhex(p["part_salt"])) for p in v["parts"])


@pytest.mark.parametrize("path", MULTIPART, ids=lambda p: p.stem)
def test_encrypting_reproduces_the_multipart_vector(path):
    v = json.loads(path.read_text())
    header, keys = new_multipart_keys(bytes.fromhex(v["dek"]), salt=bytes.fromhex(v["salt"]))
    assert header.flags == FLAG_MULTIPART_LAYOUT
    assert header.encode().hex() == v["header"]
    assert header.bound_bytes().hex() == v["intermediate"]["header_bound_0_36"]
    assert header.commitment.hex() == v["intermediate"]["commitment"]
    assert metadata_for(header, _wrapped(v)) == v["metadata"]
    plaintext = bytes.fromhex(v["plaintext"])
    body = bytearray()
    for p in v["parts"]:
        chunk = plaintext[p["plaintext_offset"]:p["plaintext_offset"] + p["plaintext_size"]]
        sealed = seal_batch(keys.part_key(p["number"], bytes.fromhex(p["part_salt"])), 0, chunk, final=True,
                            part_number=p["number"])
        assert sealed.hex() == p["stored"]
        assert len(sealed) == p["stored_size"] == ciphertext_size(p["plaintext_size"])
        body += sealed
    table = mp.PartTable(_entries(v), v["stored_part_count"])
    assert table.plaintext_size == v["plaintext_size"]
    assert table.part_offsets() == [(p["plaintext_offset"], p["stored_offset"]) for p in v["parts"]]
    assert mp.padding_size(table) == v["padding_size"]
    assert mp.trailer_size(table) == v["trailer_size"]
    assert mp.table_tail_size(v["part_count"]) == v["table_tail_size"]
    trailer = mp.seal_trailer(keys, table, table_salt=bytes.fromhex(v["table_salt"]))
    assert trailer.hex() == v["trailer"]
    body += trailer
    assert body.hex() == v["stored"]
    assert len(body) == v["stored_size"] == mp.stored_size(v["plaintext_size"], v["stored_part_count"])
    # The store's parts: copying part for part at these boundaries keeps the store's ETag, `-M` included.
    assert table.stored_part_sizes() == [s["size"] for s in v["store_parts"]]
    digests, at = b"", 0
    for size in table.stored_part_sizes():
        digests += hashlib.md5(body[at:at + size]).digest()
        at += size
    assert f"{hashlib.md5(digests).hexdigest()}-{v['stored_part_count']}" == v["store_etag"]


@pytest.mark.parametrize("path", MULTIPART, ids=lambda p: p.stem)
def test_decrypting_reproduces_the_multipart_plaintext(path):
    v = json.loads(path.read_text())
    header, wrapped = parse_metadata(v["metadata"])
    assert header.encode().hex() == v["header"] and wrapped == _wrapped(v)
    dek, stored, plaintext = bytes.fromhex(v["dek"]), bytes.fromhex(v["stored"]), bytes.fromhex(v["plaintext"])
    m = int(v["store_etag"].rsplit("-", 1)[1])
    assert m == v["stored_part_count"]
    assert mp.plaintext_size(len(stored), m) == v["plaintext_size"]  # what a listing or a HEAD shows
    assert read_whole_object(v["metadata"], dek, stored, m) == ("segment", plaintext)
    # An ETag without `-M` (the object re-chunked around the gateway): still readable through the count.
    assert read_whole_object(v["metadata"], dek, stored, None) == ("segment", plaintext)

    keys = open_multipart_keys(dek, header)
    table = mp.open_trailer(keys, stored[-mp.table_tail_size(m):], len(stored))
    assert table == mp.PartTable(_entries(v), m)
    assert mp.tail_part_count(stored) == v["part_count"]
    # Each client part (GET ?partNumber=) and every range that starts or ends at a part or segment boundary.
    for p in v["parts"]:
        start, size = p["plaintext_offset"], p["plaintext_size"]
        assert mp.part_range(table, p["number"]) == (start, start + size - 1)
        if size:
            assert _open_span(keys, stored, mp.covering_parts(start, start + size - 1, table)) == \
                plaintext[start:start + size]
    assert mp.part_range(table, 9999) is None
    n = len(plaintext)
    cuts = sorted({0, n} | {p["plaintext_offset"] for p in v["parts"]} | {i for i in range(0, n, 65536)})
    points = sorted({max(0, min(n - 1, c + d)) for c in cuts for d in (-1, 0, 1)}) if n else []
    for start in points:
        for end in points:
            if start <= end:
                assert _open_span(keys, stored, mp.covering_parts(start, end, table)) == plaintext[start:end + 1]
    # Segment by segment with the gateway, at the offsets and final indexes the vector lists.
    for p in v["parts"]:
        key = keys.part_key(p["number"], bytes.fromhex(p["part_salt"]))
        final = len(p["segments"]) - 1
        for seg in p["segments"]:
            at = p["stored_offset"] + seg["offset_in_part"]
            one = stored[at:at + seg["sealed_size"]]
            assert one[-16:].hex() == seg["tag"]
            assert open_batch(key, seg["index"], one, final, part_number=p["number"]) == \
                plaintext[p["plaintext_offset"] + seg["index"] * 65536:][:seg["plaintext_size"]]


@pytest.mark.parametrize("path", MULTIPART, ids=lambda p: p.stem)
def test_multipart_intermediate_values_follow_rfc5869(path):
    """Part keys and the table key are one-shot RFC 5869 HKDF outputs of the DEK with the object's salt, and the
    listed keys and nonces open the parts and the table with plain AES-GCM: what an independent decryptor does."""
    v = json.loads(path.read_text())
    dek, salt, mid = bytes.fromhex(v["dek"]), bytes.fromhex(v["salt"]), v["intermediate"]
    bound = bytes.fromhex(v["header"])[:36]
    assert bound[3] == 0x01
    assert hmac.new(salt, dek, hashlib.sha256).hexdigest() == mid["prk"]
    assert bytes.fromhex(mid["commitment_info"]) == b"envelope-gateway/v1/commitment" + bound
    assert HKDF(hashes.SHA256(), 32, salt, bytes.fromhex(mid["commitment_info"])).derive(dek).hex() == \
        mid["commitment"]
    stored = bytes.fromhex(v["stored"])
    opened = b""
    for p in v["parts"]:
        info = bytes.fromhex(p["part_key_info"])
        assert info == (b"envelope-gateway/v1/part-key" + bound + p["number"].to_bytes(4, "big")
                        + bytes.fromhex(p["part_salt"]))
        assert len(info) == 100
        assert HKDF(hashes.SHA256(), 32, salt, info).derive(dek).hex() == p["part_key"]
        assert HKDFExpand(hashes.SHA256(), 32, info).derive(bytes.fromhex(mid["prk"])).hex() == p["part_key"]
        aead = AESGCM(bytes.fromhex(p["part_key"]))
        for seg in p["segments"]:
            nonce = bytes.fromhex(seg["nonce"])
            assert nonce == (p["number"].to_bytes(4, "big") + seg["index"].to_bytes(7, "big")
                             + bytes([seg["index"] == len(p["segments"]) - 1]))
            at = p["stored_offset"] + seg["offset_in_part"]
            opened += aead.decrypt(nonce, stored[at:at + seg["sealed_size"]], b"")
    assert opened.hex() == v["plaintext"]
    table_info = bytes.fromhex(mid["table_key_info"])
    assert table_info == b"envelope-gateway/v1/part-table" + bound + bytes.fromhex(v["table_salt"])
    assert HKDF(hashes.SHA256(), 32, salt, table_info).derive(dek).hex() == mid["table_key"]
    tail = stored[-v["table_tail_size"]:]
    assert tail[:32].hex() == v["table_salt"] and tail[32:-4].hex() == v["sealed_table"]
    assert tail[-4:] == v["part_count"].to_bytes(4, "big") == bytes.fromhex(v["table_aad"])
    table = AESGCM(bytes.fromhex(mid["table_key"])).decrypt(bytes.fromhex(v["table_nonce"]), tail[32:-4], tail[-4:])
    assert table.hex() == v["table_plaintext"]
    assert table[:12] == v["stored_part_count"].to_bytes(4, "big") + v["plaintext_size"].to_bytes(8, "big")
    assert stored[len(stored) - v["trailer_size"]:][:v["padding_size"]] == bytes(v["padding_size"])


MULTIPART_NEGATIVE = _load("v1-multipart-negative")["cases"]


def _apply_multipart(case: dict) -> tuple[dict[str, str], bytes, bytes, int | None]:
    base = _load(case["base"])
    meta = {k: v for k, v in (base["metadata"] | case["metadata_changes"]).items() if v is not None}
    dek = bytes.fromhex(case["dek"] or base["dek"])
    out = bytearray(bytes.fromhex(base["stored"]))
    for edit in case["ciphertext_edits"]:
        op = edit["op"]
        if op == "flip":
            out[edit["offset"]] ^= 0x01
        elif op == "truncate":
            del out[edit["length"]:]
        elif op == "delete":
            del out[edit["start"]:edit["end"]]
        elif op == "insert_zeros":
            out[edit["offset"]:edit["offset"]] = bytes(edit["count"])
        elif op == "overwrite":
            data = bytes.fromhex(edit["hex"])
            out[edit["offset"]:edit["offset"] + len(data)] = data
        elif op == "splice_from":
            out[edit["start"]:edit["end"]] = bytes.fromhex(_load(edit["vector"])["stored"])[edit["start"]:edit["end"]]
        elif op == "swap":
            (a0, a1), (b0, b1) = edit["a"], edit["b"]
            out = out[:a0] + out[b0:b1] + out[a1:b0] + out[a0:a1] + out[b1:]
        else:
            raise AssertionError(f"unknown edit {op}")
    return meta, dek, bytes(out), case["etag_part_count"]


@pytest.mark.parametrize("case", MULTIPART_NEGATIVE, ids=[c["name"] for c in MULTIPART_NEGATIVE])
def test_multipart_negative_vector_fails_as_specified(case):
    meta, dek, stored, m = _apply_multipart(case)
    with pytest.raises(_Failed) as failed:
        read_whole_object(meta, dek, stored, m)
    assert type(failed.value.error).__name__ == case["error"]
    assert failed.value.step == case["detected_by"]
    assert dek.hex() not in str(failed.value.error) and dek.hex() not in repr(failed.value.error)


def test_multipart_negative_vectors_cover_every_tamper_class():
    names = {c["name"] for c in MULTIPART_NEGATIVE}
    for needed in ("swap-parts", "part-truncated-by-a-segment", "part-truncated-by-a-segment-size-kept",
                   "part-dropped", "part-dropped-size-kept", "part-from-another-upload-of-the-same-number",
                   "flip-padding-byte", "flip-sealed-table-byte", "flip-part-count", "etag-part-count-impossible",
                   "etag-part-count-possible-but-wrong", "etag-without-part-count-and-a-byte-appended",
                   "wrong-data-key", "header-flags-cleared"):
        assert needed in names
    assert {c["detected_by"] for c in MULTIPART_NEGATIVE} == {"metadata", "size", "commitment", "table", "padding",
                                                               "segment"}
    for name in {c["base"] for c in MULTIPART_NEGATIVE}:
        base = _load(name)
        assert read_whole_object(base["metadata"], bytes.fromhex(base["dek"]), bytes.fromhex(base["stored"]),
                                 base["stored_part_count"])[1].hex() == base["plaintext"]


# --- wrapped-key entries (§3, §8, §16) ---------------------------------------------------------------------------
WRAPPED_KEY_VARIANTS = _load("v1-wrapped-keys")["variants"]


def test_every_wrapped_key_scheme_has_vectors():
    assert {v["scheme"] for v in WRAPPED_KEY_VARIANTS} == {"kms", SCHEME_BUCKET_KEY, SCHEME_RSA_OAEP}


@pytest.mark.parametrize("variant", WRAPPED_KEY_VARIANTS, ids=lambda v: v["name"])
def test_wrapped_key_entry_both_ways(variant):
    wrapped = WrappedKey(variant["scheme"], variant["key_id"], bytes.fromhex(variant["blob"]))
    assert wrapped.encode() == variant["metadata_value"]
    assert WrappedKey.decode(variant["metadata_value"]) == wrapped


@pytest.mark.parametrize("variant", [v for v in WRAPPED_KEY_VARIANTS if v["scheme"] == SCHEME_BUCKET_KEY],
                         ids=lambda v: v["name"])
def test_bucket_key_derivation_both_ways(variant):
    # Reading: the entry's blob gives the salt and the wrapped bucket key; the bucket key gives the DEK.
    entry = BucketKeyBlob.decode(bytes.fromhex(variant["blob"]))
    assert entry.salt.hex() == variant["salt"] and entry.wrapped_bucket_key.hex() == variant["wrapped_bucket_key"]
    assert bucket_key_context(variant["bucket"]) == variant["bucket_key_encryption_context"]
    assert dek_info(variant["bucket"], variant["key"]).hex() == variant["info"]
    bucket_key = bytes.fromhex(variant["bucket_key"])
    assert derive_dek(bucket_key, entry.salt, variant["bucket"], variant["key"]).hex() == variant["dek"]
    # The same with one-shot RFC 5869 HKDF, and the PRK the vector states.
    hkdf = HKDF(hashes.SHA256(), 32, entry.salt, bytes.fromhex(variant["info"]))
    assert hkdf.derive(bucket_key).hex() == variant["dek"]
    assert hmac.new(entry.salt, bucket_key, hashlib.sha256).hexdigest() == variant["prk"]
    # Writing: the same salt and wrapped bucket key encode to the vector's blob.
    assert BucketKeyBlob(entry.salt, entry.wrapped_bucket_key).encode().hex() == variant["blob"]


# --- partner entries and signed shares (§17) --------------------------------------------------------------------
PARTNER_VARIANTS = [v for v in WRAPPED_KEY_VARIANTS if v["scheme"] == SCHEME_RSA_OAEP]


def _partner_key(variant: dict) -> PartnerPrivateKey:
    return PartnerPrivateKey.from_pem(variant["private_key_pem"].encode(), None, "vector")


def test_partner_variants_cover_the_smallest_and_largest_key():
    assert sorted(v["rsa_bits"] for v in PARTNER_VARIANTS) == [2048, 4096]
    assert [v["metadata_bytes_as_entry_1"] for v in PARTNER_VARIANTS] == [423, 764]  # FORMAT.md §17.8


@pytest.mark.parametrize("variant", PARTNER_VARIANTS, ids=lambda v: v["name"])
def test_partner_entry_unwraps_to_the_vector_dek(variant):
    key = _partner_key(variant)
    public_der = serialization.load_pem_private_key(variant["private_key_pem"].encode(), None).public_key() \
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert public_der.hex() == variant["public_key_spki_der"]
    assert key.key_id == variant["key_id"]
    assert oaep_label(variant["bucket"], variant["key"]).hex() == variant["oaep_label"]
    entry = WrappedKey.decode(variant["metadata_value"])
    assert entry.blob.hex() == variant["blob"] and key.accepts(entry)
    assert key.unwrap(entry, variant["bucket"], variant["key"]).hex() == variant["dek"]


@pytest.mark.parametrize("variant", PARTNER_VARIANTS, ids=lambda v: v["name"])
def test_partner_wrap_round_trips_with_the_vector_key(variant):
    # OAEP is randomized: the writer is checked by what the vector's key opens, with the vector's parameters.
    private = serialization.load_pem_private_key(variant["private_key_pem"].encode(), None)
    recipient = Recipient(private.public_key())
    entry = recipient.wrap(bytes.fromhex(variant["dek"]), variant["bucket"], variant["key"])
    assert entry.scheme == SCHEME_RSA_OAEP and entry.key_id == variant["key_id"]
    assert len(entry.blob) == variant["rsa_bits"] // 8
    oaep = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), bytes.fromhex(variant["oaep_label"]))
    assert private.decrypt(entry.blob, oaep).hex() == variant["dek"]
    assert entry.blob.hex() != variant["blob"]  # a fresh seed


@pytest.mark.parametrize("variant", PARTNER_VARIANTS, ids=lambda v: v["name"])
def test_partner_blobs_a_reader_must_refuse(variant):
    key = _partner_key(variant)
    assert {r["name"] for r in variant["refused"]} >= {"pkcs1-v1.5", "label-of-another-object", "empty-label"}
    for refused in variant["refused"]:
        entry = WrappedKey(SCHEME_RSA_OAEP, variant["key_id"], bytes.fromhex(refused["blob"]))
        with pytest.raises(errors.TamperedCiphertext):
            key.unwrap(entry, variant["bucket"], variant["key"])
    # The genuine entry under another name is refused too (the label names the object).
    with pytest.raises(errors.TamperedCiphertext):
        key.unwrap(WrappedKey.decode(variant["metadata_value"]), variant["bucket"], "dir/other.bin")


SIGNED_SHARE = _load("v1-signed-share")


def _signed_share() -> tuple[Manifest, SignerPublicKey, SharedObject]:
    """The manifest, the signer's key, and the statement's fields as a partner recomputes them from the object."""
    manifest = Manifest.decode(json.dumps(SIGNED_SHARE["manifest"]), "vector")
    spki = bytes.fromhex(SIGNED_SHARE["signer_public_key_spki_der"])
    signer = SignerPublicKey(serialization.load_der_public_key(spki))
    base = _load(SIGNED_SHARE["base"])
    stored = bytes.fromhex(base["ciphertext"])
    header, wrapped = parse_metadata(SIGNED_SHARE["metadata"])
    entry = next(w for w in wrapped if w.scheme == SCHEME_RSA_OAEP)
    actual = SharedObject(base["bucket"], base["key"], len(stored), 0, hashlib.sha256(stored).digest(),
                          header_value(header), entry.encode(), None)
    return manifest, signer, actual


def test_signed_share_statement_and_signature():
    manifest, signer, actual = _signed_share()
    assert actual.statement().hex() == SIGNED_SHARE["statement"]
    assert manifest.objects[0].signature.hex() == SIGNED_SHARE["signature"]
    verify_shared(manifest, signer, actual)
    # Verified, the partner's entry gives the DEK and the object decrypts to the base vector's plaintext.
    variant = next(v for v in PARTNER_VARIANTS if v["name"] == SIGNED_SHARE["partner_variant"])
    dek = _partner_key(variant).unwrap(WrappedKey.decode(actual.entry_value), actual.bucket, actual.key)
    base = _load(SIGNED_SHARE["base"])
    _, plaintext = read_whole_object(SIGNED_SHARE["metadata"], dek, bytes.fromhex(base["ciphertext"]))
    assert plaintext.hex() == base["plaintext"]
    # The manifest re-encodes to what the vector holds.
    assert json.loads(manifest.encode()) == SIGNED_SHARE["manifest"]


@pytest.mark.parametrize("change", ["bucket", "key", "stored_size_bytes", "part_count", "ciphertext_sha256",
                                    "header_value", "entry_value"])
def test_signed_share_refuses_any_changed_field(change):
    manifest, signer, actual = _signed_share()
    value = getattr(actual, change)
    changed = {str: lambda v: v[:-1] + ("A" if v[-1] != "A" else "B"), int: lambda v: v + 1,
               bytes: lambda v: bytes([v[0] ^ 1]) + v[1:]}[type(value)](value)
    with pytest.raises(errors.TamperedCiphertext):
        verify_shared(manifest, signer, SharedObject(**{**actual.__dict__, change: changed}))
