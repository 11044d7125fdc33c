"""The pure parts of `encrypt-existing`: how an object of known size is laid out and sealed (gateway.format.writing;
what it writes decrypts with the independent reader of `envelope-gateway decrypt`), the state file's watermark
(gateway.tools.resume), and the metadata and tags carried over."""
from __future__ import annotations

import io
import os
import secrets

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import errors
from gateway.cli import _byte_size
from gateway.format.envelope import WrappedKey, metadata_for, new_multipart_keys, new_object_key
from gateway.format.multipart import MAX_PARTS
from gateway.format.sizes import SEGMENT_SIZE_BYTES, ciphertext_size
from gateway.format.writing import MIN_PART_BYTES, multipart_plan, part_sizes, seal_run
from gateway.tools import resume
from gateway.tools.decrypt import decrypt_body
from gateway.tools.encrypt_existing import has_envelope, tagging, write_metadata
from gateway.tools.sources import FileBody

MiB = 1024**2


@settings(max_examples=300)
@given(size=st.integers(0, 6 * 1024**4), part=st.integers(MIN_PART_BYTES, 64 * MiB))
def test_part_sizes_follow_s3s_rules(size, part):
    sizes = part_sizes(size, part)
    if size <= part:
        assert sizes is None
        return
    assert sizes is not None and sum(sizes) == size and 2 <= len(sizes) <= MAX_PARTS
    assert all(s >= MIN_PART_BYTES for s in sizes[:-1]) and 0 < sizes[-1] <= sizes[0]
    assert len(set(sizes[:-1])) <= 1 and (sizes[0] == part or sizes[0] % SEGMENT_SIZE_BYTES == 0)


def test_part_size_limits():
    with pytest.raises(ValueError):
        part_sizes(10, MIN_PART_BYTES - 1)
    with pytest.raises(ValueError):
        part_sizes(60 * 1024**4, MIN_PART_BYTES)  # 10,000 parts of 5 GiB are not enough
    assert part_sizes(5 * 1024**4, 8 * MiB)[0] > 8 * MiB  # 5 TiB: larger parts, at most 10,000


def _reader(data: bytes):
    return io.BytesIO(data).read


@pytest.mark.parametrize("size", [0, 1, SEGMENT_SIZE_BYTES, 3 * SEGMENT_SIZE_BYTES + 5, 40 * SEGMENT_SIZE_BYTES])
def test_one_request_objects_decrypt_with_the_offline_reader(size):
    data, dek = os.urandom(size), secrets.token_bytes(32)
    header, key = new_object_key(dek)
    stored = b"".join(seal_run(_reader(data), size, key))
    assert len(stored) == ciphertext_size(size)
    out = io.BytesIO()
    assert decrypt_body(dek, header, '"etag"', FileBody(io.BytesIO(stored)), out.write) == size
    assert out.getvalue() == data


@pytest.mark.parametrize("sizes", [[MIN_PART_BYTES, 1], [MIN_PART_BYTES, MIN_PART_BYTES, 70_000],
                                   [MIN_PART_BYTES + 3, MIN_PART_BYTES]])
def test_multipart_layout_objects_decrypt_with_the_offline_reader(sizes):
    data, dek = os.urandom(sum(sizes)), secrets.token_bytes(32)
    header, keys = new_multipart_keys(dek)
    plan = multipart_plan(keys, sizes)
    read, parts = _reader(data), []
    for index, part in enumerate(plan.table.parts):
        sealed = b"".join(seal_run(read, part.size, keys.part_key(part.number, part.salt), part.number))
        parts.append(sealed + (plan.trailer if index == len(sizes) - 1 else b""))
        assert len(parts[-1]) == plan.stored_part_size(index)
    out = io.BytesIO()
    etag = f'"0123456789abcdef0123456789abcdef-{len(sizes)}"'  # M = N: the trailer ends the last part
    assert decrypt_body(dek, header, etag, FileBody(io.BytesIO(b"".join(parts))), out.write) == len(data)
    assert out.getvalue() == data


def test_a_short_read_is_never_sealed_as_final():
    _, key = new_object_key(secrets.token_bytes(32))
    with pytest.raises(EOFError):
        list(seal_run(_reader(b"x" * 100), 200, key))


def test_watermark_advances_over_keys_finished_in_order_only():
    progress = resume.Progress("b", "p/")
    for key in ("a", "b", "c", "d"):
        progress.listed(key)
    progress.finished("b", ok=True)
    assert (progress.after, progress.done) == ("", {"b"})
    progress.finished("a", ok=False)
    assert (progress.after, progress.done, progress.failed) == ("b", set(), {"a"})
    progress.finished("d", ok=True)
    progress.finished("a", ok=True)  # a retry of a failed key that is not pending
    assert (progress.after, progress.done, progress.failed) == ("b", {"d"}, set())
    progress.finished("c", ok=True)
    assert (progress.after, progress.done) == ("d", set())


def test_state_file_round_trip_and_refusals(tmp_path):
    path = tmp_path / "state.json"
    assert resume.load(path, "b", "p/").after == ""
    progress = resume.Progress("b", "p/", "k1", {"k3"}, {"k0"}, {"k2": "upload-2"})
    resume.save(path, progress)
    again = resume.load(path, "b", "p/")
    assert (again.after, again.done, again.failed, again.uploads) == ("k1", {"k3"}, {"k0"}, {"k2": "upload-2"})
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
    with pytest.raises(errors.InvalidArgument, match="belongs to bucket"):
        resume.load(path, "other", "p/")
    path.write_text("{}")
    with pytest.raises(errors.InvalidArgument, match="not an encrypt-existing state file"):
        resume.load(path, "b", "p/")


def test_metadata_tags_and_sizes_carried_over():
    header, _ = new_object_key(secrets.token_bytes(32))
    wrapped = WrappedKey("kms", "arn:aws:kms:us-east-1:123456789012:key/k", b"\x01" * 180)
    assert write_metadata({"owner": "x"}, header, wrapped) == {"owner": "x", **metadata_for(header, [wrapped])}
    with pytest.raises(errors.MetadataTooLarge):
        write_metadata({"big": "v" * 1800}, header, wrapped)
    assert has_envelope({"Envelope-Later": "x"}) and not has_envelope({"owner": "x"})
    assert tagging([{"Key": "a b", "Value": "c&d"}, {"Key": "e", "Value": ""}]) == "a%20b=c%26d&e="
    assert _byte_size("8MiB") == 8 * MiB and _byte_size("5242880") == 5 * MiB and _byte_size("1 GiB") == 1024**3
