"""The offline decrypt's pure path (gateway.tools.decrypt) against the published vectors: the vector's DEK comes in
through an unwrapper (the seam that KMS, and later other schemes, plug into), so no test hook exists in the
product. Positive vectors decrypt to their plaintext from a file-like body; every negative vector fails with its
error, having written at most a true prefix of the plaintext."""
from __future__ import annotations

import io
import json
from collections.abc import Mapping

import pytest

from gateway import errors
from gateway.format.envelope import WrappedKey, encryption_context, parse_metadata
from gateway.tools.datakey import unwrap_data_key
from gateway.tools.decrypt import decrypt_body, decrypt_object
from gateway.tools.sources import FileBody, StoredObject, stored_object
from tests.unit.test_format_vectors import (MULTIPART, MULTIPART_NEGATIVE, NEGATIVE, POSITIVE, _apply,
                                            _apply_multipart, _load)


class VectorUnwrapper:
    """Hands out the vector's DEK for its `kms` copy, and records the context it was asked with."""

    def __init__(self, dek: bytes, key_id: str | None = None) -> None:
        self.dek, self.key_id, self.contexts = dek, key_id, []

    def accepts(self, wrapped: WrappedKey) -> bool:
        return wrapped.scheme == "kms" and self.key_id in (None, wrapped.key_id)

    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> bytes:
        self.contexts.append(dict(context))
        return self.dek

    def describe(self) -> str:
        return "the vector's key"


def _vector(path) -> tuple[dict, bytes, bytes, str]:
    v = json.loads(path.read_text())
    stored = bytes.fromhex(v.get("ciphertext") or v["stored"])
    return v, stored, bytes.fromhex(v["plaintext"]), v.get("store_etag", '"d41d8cd98f00b204e9800998ecf8427e"')


@pytest.mark.parametrize("path", POSITIVE + MULTIPART, ids=lambda p: p.stem)
def test_vectors_decrypt_through_the_tool(path):
    v, stored, plaintext, etag = _vector(path)
    unwrapper = VectorUnwrapper(bytes.fromhex(v["dek"]))
    out = io.BytesIO()
    head = StoredObject(v["metadata"], etag, len(stored))
    assert decrypt_object(head, FileBody(io.BytesIO(stored)), v["bucket"], v["key"], [unwrapper], out.write) == \
        len(plaintext)
    assert out.getvalue() == plaintext
    assert unwrapper.contexts == [v["encryption_context"]] == [encryption_context(v["bucket"], v["key"])]


@pytest.mark.parametrize("path", POSITIVE + MULTIPART, ids=lambda p: p.stem)
@pytest.mark.parametrize("etag", ["vector", "no -M"])
def test_one_segment_batches_and_an_etag_without_part_count(path, etag):
    """Batches of one segment (many batches per run, the final one short) give the same plaintext; so does a
    multipart-layout object whose ETag lost its `-M` (re-chunked around the gateway: the table's count is used)."""
    v, stored, plaintext, vector_etag = _vector(path)
    header, _ = parse_metadata(v["metadata"])
    out = io.BytesIO()
    decrypt_body(bytes.fromhex(v["dek"]), header, vector_etag if etag == "vector" else '"abc"',
                 FileBody(io.BytesIO(stored)), out.write, batch_segments=1)
    assert out.getvalue() == plaintext


def _negative_cases() -> list:
    cases = [pytest.param(case, *_apply(case), '"d41d8cd98f00b204e9800998ecf8427e"', id=case["name"])
             for case in NEGATIVE]
    for case in MULTIPART_NEGATIVE:
        meta, dek, stored, m = _apply_multipart(case)
        cases.append(pytest.param(case, meta, dek, stored, f'"0123-{m}"' if m else '"0123"',
                                  id="multipart-" + case["name"]))
    return cases


@pytest.mark.parametrize("case, meta, dek, stored, etag", _negative_cases())
def test_negative_vectors_fail_and_write_only_a_true_prefix(case, meta, dek, stored, etag):
    base = _load(case["base"])
    out = io.BytesIO()
    with pytest.raises(errors.S3Error) as failed:
        decrypt_object(StoredObject(meta, etag, len(stored)), FileBody(io.BytesIO(stored)), base["bucket"],
                       base["key"], [VectorUnwrapper(dek)], out.write)
    assert type(failed.value).__name__ == case["error"]
    assert bytes.fromhex(base["plaintext"]).startswith(out.getvalue())
    assert dek.hex() not in str(failed.value)


class _ChangedUnderfoot(FileBody):
    """A body whose tail is read from one version and whose stream from another (a file rewritten meanwhile)."""

    def __init__(self, tail_from: bytes, stream_from: bytes) -> None:
        super().__init__(io.BytesIO(tail_from))
        self._streamed = io.BytesIO(stream_from)

    def stream(self) -> io.BytesIO:
        return self._streamed


def test_the_padding_is_checked_in_the_bytes_streamed():
    """The part table is taken from the tail, but the padding of the pass that yields the plaintext is checked
    as it streams by (FORMAT.md §15.7 step 5), whatever the tail showed."""
    case = next(c for c in MULTIPART_NEGATIVE if c["name"] == "flip-padding-byte")
    meta, dek, tampered, m = _apply_multipart(case)
    base = _load(case["base"])
    header, _ = parse_metadata(meta)
    with pytest.raises(errors.TamperedCiphertext, match="padding"):
        decrypt_body(dek, header, f'"0123-{m}"', _ChangedUnderfoot(bytes.fromhex(base["stored"]), tampered),
                     io.BytesIO().write)


def test_a_body_of_another_size_than_head_object_says_is_refused_before_kms():
    v, stored, _, etag = _vector(POSITIVE[-1])
    unwrapper = VectorUnwrapper(bytes.fromhex(v["dek"]))
    with pytest.raises(errors.TamperedCiphertext, match="truncated"):
        decrypt_object(StoredObject(v["metadata"], etag, len(stored)), FileBody(io.BytesIO(stored[:-1])),
                       v["bucket"], v["key"], [unwrapper], io.BytesIO().write)
    assert unwrapper.contexts == []


def test_metadata_without_envelope_says_where_to_read_it():
    with pytest.raises(errors.NotEncrypted, match="from the store itself"):
        decrypt_object(StoredObject({"color": "blue"}, '"x"', 16), FileBody(io.BytesIO(bytes(16))), "b", "k",
                       [VectorUnwrapper(bytes(32))], io.BytesIO().write)


# --- which copy of the data key ----------------------------------------------------------------------------------
def _copy(scheme: str, key_id: str) -> WrappedKey:
    return WrappedKey(scheme, key_id, b"blob")


class _Refusing(VectorUnwrapper):
    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> bytes:
        self.contexts.append(wrapped.key_id)
        raise errors.KMSAccessDenied()


def test_no_usable_copy_names_what_there_is_and_what_could_be_used():
    with pytest.raises(errors.UnsupportedFormat, match=r"No usable wrapped key.*rsa-oaep \(partner\).*vector"):
        unwrap_data_key([_copy("rsa-oaep", "partner")], {}, [VectorUnwrapper(bytes(32))])
    with pytest.raises(errors.UnsupportedFormat, match="No usable wrapped key"):
        unwrap_data_key([_copy("kms", "arn:a")], {}, [VectorUnwrapper(bytes(32), key_id="arn:pinned")])


def test_copies_are_tried_in_order_and_the_first_failure_is_reported():
    refusing = _Refusing(bytes(32))
    with pytest.raises(errors.KMSAccessDenied):
        unwrap_data_key([_copy("kms", "arn:a"), _copy("kms", "arn:b")], {}, [refusing])
    assert refusing.contexts == ["arn:a", "arn:b"]
    working = VectorUnwrapper(b"k" * 32, key_id="arn:b")
    assert unwrap_data_key([_copy("kms", "arn:a"), _copy("kms", "arn:b")], {"c": "1"}, [refusing, working]) == \
        b"k" * 32


# --- head-object JSON ------------------------------------------------------------------------------------------
def test_head_object_json_fields():
    head = stored_object({"Metadata": {"envelope-header": "x"}, "ETag": '"e-2"', "ContentLength": 5,
                          "AcceptRanges": "bytes"}, "head.json")
    assert head == StoredObject({"envelope-header": "x"}, '"e-2"', 5)
    for bad in ([], {"ETag": '"e"'}, {"Metadata": {"a": 1}}, {"Metadata": {}, "ContentLength": "5"}):
        with pytest.raises(errors.InvalidArgument, match="head.json"):
            stored_object(bad, "head.json")
