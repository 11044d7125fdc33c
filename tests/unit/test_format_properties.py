"""Properties of format v1: round trips for any size and any batching, authenticated ranged reads, every tamper
class detected, header parameters bound, metadata parsing, and no key material in reprs or errors."""
from __future__ import annotations

import dataclasses
import os
import pickle
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import errors
from gateway.format import envelope
from gateway.format.envelope import (
    META_HEADER,
    Header,
    ObjectKey,
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
    SEGMENT_SIZE_BYTES,
    TAG_SIZE_BYTES,
    ciphertext_size,
    covering_segments,
    plaintext_size,
    segment_count,
)

S = SEGMENT_SIZE_BYTES
C = SEALED_SEGMENT_SIZE_BYTES
T = TAG_SIZE_BYTES
ARN = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
WRAPPED = WrappedKey("kms", ARN, b"\x01\x02wrapped-blob")

SLOW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

sizes = st.one_of(st.sampled_from([0, 1, S - 1, S, S + 1, 2 * S - 1, 2 * S, 2 * S + 1, 3 * S]),
                  st.integers(0, 4 * S + 3))


def _bytes(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


def _store(n: int, seed: int = 0, dek: bytes | None = None) -> tuple[bytes, Header, bytes, bytes]:
    """(dek, header, plaintext, stored) of a fresh object of n bytes."""
    dek = dek or os.urandom(32)
    header, key = new_object_key(dek)
    plaintext = _bytes(seed, n)
    return dek, header, plaintext, bytes(seal_batch(key, 0, plaintext, final=True))


def read_whole(dek: bytes, header: Header, stored: bytes | bytearray) -> bytes:
    """Whole-object read in the order of docs/FORMAT.md (header already parsed)."""
    try:
        n = plaintext_size(len(stored))
    except ValueError:
        raise errors.TamperedCiphertext("impossible stored size") from None
    key = open_object_key(dek, header)
    span = covering_segments(0, n - 1, n)
    return bytes(open_batch(key, 0, memoryview(stored)[span.ciphertext_start:span.ciphertext_end + 1],
                            span.final_segment))


def _cut(total: int, parts: list[int], minimum_last: int) -> list[tuple[int, int]]:
    """Split `total` segments into consecutive batches of the given segment counts; the last batch gets the rest
    and at least `minimum_last` segments."""
    batches, at = [], 0
    for count in parts:
        if at + count > total - minimum_last:
            break
        batches.append((at, count))
        at += count
    batches.append((at, total - at))
    return batches


# --- round trips ------------------------------------------------------------------------------------------------
@SLOW
@given(n=sizes, seed=st.integers(0, 2**32), parts=st.lists(st.integers(1, 3), max_size=6))
def test_batched_sealing_is_identical_to_one_shot_and_opens_in_any_batching(n, seed, parts):
    dek = os.urandom(32)
    header, key = new_object_key(dek)
    plaintext = _bytes(seed, n)
    one_shot = seal_batch(key, 0, plaintext, final=True)
    assert len(one_shot) == ciphertext_size(n)

    k = segment_count(n)
    view = memoryview(plaintext)
    sealed = bytearray()
    for first, count in _cut(k, parts, minimum_last=1):
        final = first + count == k
        end = n if final else (first + count) * S
        sealed += seal_batch(key, first, view[first * S:end], final=final)
    assert sealed == one_shot

    reader = open_object_key(dek, header)
    opened = bytearray()
    for first, count in _cut(k, list(reversed(parts)), minimum_last=1):
        opened += open_batch(reader, first, memoryview(one_shot)[first * C:min((first + count) * C, len(one_shot))],
                             k - 1)
    assert opened == plaintext


@SLOW
@given(n=st.integers(1, 4 * S + 3), seed=st.integers(0, 2**32), data=st.data())
def test_ranged_reads_return_exactly_the_range(n, seed, data):
    dek, header, plaintext, stored = _store(n, seed)
    start = data.draw(st.integers(0, n - 1))
    end = data.draw(st.integers(start, n - 1))
    span = covering_segments(start, end, n)
    window = stored[span.ciphertext_start:span.ciphertext_end + 1]
    opened = open_batch(open_object_key(dek, header), span.first_segment, window, span.final_segment)
    assert bytes(opened[span.skip_bytes:span.skip_bytes + span.length]) == plaintext[start:end + 1]


def test_empty_object_round_trip_authenticates_emptiness():
    dek, header, plaintext, stored = _store(0)
    assert plaintext == b"" and len(stored) == T
    assert read_whole(dek, header, stored) == b""
    with pytest.raises(errors.TamperedCiphertext):
        read_whole(dek, header, b"")  # "no segment" is not an empty object
    with pytest.raises(errors.TamperedCiphertext):
        # An empty non-final segment would also be 16 bytes; only the final flag tells them apart.
        key = open_object_key(dek, header)
        open_batch(key, 0, stored, final_index=1)


def test_inputs_may_be_bytes_bytearray_or_memoryview():
    dek = os.urandom(32)
    header, key = new_object_key(dek)
    plaintext = _bytes(1, 2 * S + 3)
    expected = seal_batch(key, 0, plaintext, final=True)
    assert seal_batch(key, 0, bytearray(plaintext), final=True) == expected
    assert seal_batch(key, 0, memoryview(plaintext), final=True) == expected
    assert open_batch(key, 0, memoryview(bytearray(expected)), 2) == plaintext


# --- tampering --------------------------------------------------------------------------------------------------
@SLOW
@given(n=sizes, seed=st.integers(0, 2**32), data=st.data())
def test_any_flipped_bit_is_detected(n, seed, data):
    dek, header, _, stored = _store(n, seed)
    at = data.draw(st.integers(0, len(stored) - 1))
    bit = data.draw(st.integers(0, 7))
    tampered = bytearray(stored)
    tampered[at] ^= 1 << bit
    with pytest.raises(errors.TamperedCiphertext):
        read_whole(dek, header, tampered)


@SLOW
@given(n=sizes, seed=st.integers(0, 2**32), data=st.data())
def test_any_truncation_is_detected(n, seed, data):
    dek, header, _, stored = _store(n, seed)
    keep = data.draw(st.integers(0, len(stored) - 1))
    with pytest.raises(errors.TamperedCiphertext):
        read_whole(dek, header, stored[:keep])


@pytest.mark.parametrize("n", [S + 1, 2 * S, 2 * S + 5, 3 * S])
def test_truncation_at_a_segment_boundary_is_detected(n):
    # Dropping whole final segments leaves a stored size that is valid on its own: only the final flag catches it.
    dek, header, _, stored = _store(n)
    for keep_segments in range(1, segment_count(n)):
        truncated = stored[:keep_segments * C]
        assert plaintext_size(len(truncated)) == keep_segments * S
        with pytest.raises(errors.TamperedCiphertext):
            read_whole(dek, header, truncated)


@pytest.mark.parametrize("n", [0, 1, S, 2 * S, 2 * S + 5])
def test_extension_is_detected(n):
    dek, header, plaintext, stored = _store(n)
    key = open_object_key(dek, header)
    k = segment_count(n)
    # Even a segment sealed under the object's own key at the next index, flagged final, is refused: the old final
    # segment is then read as mid-stream and fails its tag (or its length shows it was not full).
    extra = seal_batch(key, k, b"more data", final=True) if n % S == 0 and n else None
    candidates = [stored + stored[:C], stored + os.urandom(C), stored + os.urandom(50)]
    if extra is not None:
        candidates.append(stored + extra)
    for extended in candidates:
        with pytest.raises(errors.TamperedCiphertext):
            read_whole(dek, header, extended)


@pytest.mark.parametrize("n", [2 * S, 2 * S + 5, 3 * S + 1])
def test_reordered_segments_are_detected(n):
    dek, header, _, stored = _store(n)
    swapped = stored[C:2 * C] + stored[:C] + stored[2 * C:]
    with pytest.raises(errors.TamperedCiphertext):
        read_whole(dek, header, swapped)
    # Also a segment repeated in place of another.
    repeated = stored[:C] + stored[:C] + stored[2 * C:]
    with pytest.raises(errors.TamperedCiphertext):
        read_whole(dek, header, repeated)


@pytest.mark.parametrize("same_dek", [False, True])
def test_segments_from_another_object_are_detected(same_dek):
    dek, header, _, stored = _store(2 * S + 5, seed=1)
    _, other_header, _, other = _store(2 * S + 5, seed=2, dek=dek if same_dek else None)
    for spliced in (other[:C] + stored[C:], stored[:C] + other[C:2 * C] + stored[2 * C:], other):
        with pytest.raises(errors.TamperedCiphertext):
            read_whole(dek, header, spliced)
    # The other object's header with this body: with the same DEK the commitment holds (it commits to the DEK),
    # but the object key differs and the first tag fails.
    if same_dek:
        with pytest.raises(errors.TamperedCiphertext):
            read_whole(dek, other_header, stored)


def test_wrong_data_key_fails_the_commitment_before_any_segment():
    dek, header, _, stored = _store(S + 1)
    for wrong in (os.urandom(32), bytes(32), dek[:-1] + bytes([dek[-1] ^ 1]), dek[:16], dek + b"\x00"):
        with pytest.raises(errors.TamperedCiphertext) as err:
            open_object_key(wrong, header)
        assert "commitment" in err.value.message
        assert dek.hex() not in repr(err.value) and wrong.hex() not in str(err.value)


def test_segments_sealed_for_another_part_number_do_not_open():
    dek = os.urandom(32)
    _, key = new_object_key(dek)
    sealed = seal_batch(key, 0, b"x" * 10, final=True, part_number=1)
    assert open_batch(key, 0, sealed, 0, part_number=1) == b"x" * 10
    with pytest.raises(errors.TamperedCiphertext):
        open_batch(key, 0, sealed, 0)


def test_open_batch_framing():
    dek = os.urandom(32)
    _, key = new_object_key(dek)
    stored = seal_batch(key, 0, _bytes(3, 3 * S + 100), final=True)  # segments 0..3, 3 is final (100 bytes)
    with pytest.raises(errors.TamperedCiphertext, match="after its final"):
        open_batch(key, 0, stored, final_index=2)  # a segment after the final one
    with pytest.raises(errors.TamperedCiphertext, match="short"):
        open_batch(key, 0, stored[:2 * C + 10], final_index=3)  # a short segment before the final one
    with pytest.raises(errors.TamperedCiphertext):
        open_batch(key, 3, stored[3 * C:], final_index=4)  # the real final segment opened as mid-stream
    with pytest.raises(errors.TamperedCiphertext):
        open_batch(key, 2, stored[2 * C:3 * C], final_index=2)  # a mid-stream segment opened as final
    with pytest.raises(errors.TamperedCiphertext, match="too short"):
        open_batch(key, 3, stored[3 * C:3 * C + T], final_index=3)  # an empty final segment after others
    with pytest.raises(errors.TamperedCiphertext):
        open_batch(key, 0, b"", final_index=3)
    with pytest.raises(errors.TamperedCiphertext):
        open_batch(key, 1, stored[:C], final_index=3)  # the right bytes at the wrong index
    assert open_batch(key, 1, stored[C:3 * C], final_index=3) == _bytes(3, 3 * S + 100)[S:3 * S]


def test_seal_batch_refuses_layouts_no_reader_accepts():
    _, key = new_object_key(os.urandom(32))
    with pytest.raises(ValueError):
        seal_batch(key, 0, b"x" * (S + 1), final=False)  # non-final batches are whole segments
    with pytest.raises(ValueError):
        seal_batch(key, 2, b"", final=True)  # an empty final segment after others
    with pytest.raises(ValueError):
        seal_batch(key, -1, b"x" * S, final=False)
    with pytest.raises(ValueError):
        seal_batch(key, 0, b"x", final=True, part_number=2**32)
    with pytest.raises(ValueError):
        seal_batch(key, 2**56 - 1, b"x" * (2 * S), final=False)
    assert seal_batch(key, 5, b"", final=False) == b""


# --- the header: every parameter bound, unsupported values refused ----------------------------------------------
def _meta_with(header_bytes: bytes) -> dict[str, str]:
    return {META_HEADER: envelope._b64encode(header_bytes), "envelope-key-0": WRAPPED.encode()}


@pytest.mark.parametrize("offset, value", [(0, 0), (0, 2), (0, 255), (1, 0), (1, 2), (2, 15), (2, 17), (2, 20),
                                           (3, 0x02), (3, 0x03), (3, 0x80)])
def test_changed_algorithm_parameters_are_unsupported(offset, value):
    dek, header, _, _ = _store(10)
    changed = bytearray(header.encode())
    changed[offset] = value
    with pytest.raises(errors.UnsupportedFormat):
        parse_metadata(_meta_with(bytes(changed)))
    # Built directly (not parsed), the key schedule refuses it too.
    field = ("version", "suite", "segment_size_log2", "flags")[offset]
    with pytest.raises(errors.UnsupportedFormat):
        open_object_key(dek, dataclasses.replace(header, **{field: value}))


def test_flag_bit_0_selects_the_multipart_layout_and_is_bound():
    """Bit 0 (multipart layout, FORMAT.md §15) parses, but a one-request object's header edited to carry it has no
    object key (UnsupportedFormat) and fails the multipart key schedule's commitment (TamperedCiphertext)."""
    dek, header, _, _ = _store(10)
    changed = bytearray(header.encode())
    changed[3] = 0x01
    parsed, _ = parse_metadata(_meta_with(bytes(changed)))
    assert parsed.flags == 0x01
    with pytest.raises(errors.UnsupportedFormat):
        open_object_key(dek, parsed)
    with pytest.raises(errors.TamperedCiphertext, match="commitment"):
        envelope.open_multipart_keys(dek, parsed)


@pytest.mark.parametrize("field, value", [("version", 2), ("suite", 2), ("segment_size_log2", 20), ("flags", 1)])
def test_every_parameter_is_bound_into_the_commitment_and_key(field, value):
    """Should a later revision accept another value, a header edited to it still fails the commitment."""
    dek, header, _, _ = _store(10)
    changed = dataclasses.replace(header, **{field: value})
    prk = envelope._prk(dek, header.salt)
    assert envelope._commitment(prk, changed.bound_bytes()) != header.commitment


@pytest.mark.parametrize("offset", [4, 20, 35, 36, 50, 67])
def test_changed_salt_or_commitment_is_tampering(offset):
    dek, header, _, stored = _store(S + 7)
    changed = bytearray(header.encode())
    changed[offset] ^= 0x01
    parsed, _ = parse_metadata(_meta_with(bytes(changed)))
    with pytest.raises(errors.TamperedCiphertext, match="commitment"):
        read_whole(dek, parsed, stored)


@pytest.mark.parametrize("raw", [b"", b"\x01", b"\x01" * 67, b"\x01" * 69])
def test_header_of_the_wrong_length_is_tampering(raw):
    with pytest.raises(errors.TamperedCiphertext):
        Header.decode(raw)


def test_header_round_trip_and_shape_checks():
    header, _ = new_object_key(os.urandom(32))
    assert len(header.encode()) == 68
    assert Header.decode(header.encode()) == header
    assert header.encode()[:4] == bytes([1, 1, 16, 0])
    with pytest.raises(ValueError):
        dataclasses.replace(header, salt=b"short")
    with pytest.raises(ValueError):
        dataclasses.replace(header, version=256)


def test_new_object_key_uses_a_fresh_salt_each_time():
    dek = os.urandom(32)
    first, _ = new_object_key(dek)
    second, _ = new_object_key(dek)
    assert first.salt != second.salt and first.commitment != second.commitment
    with pytest.raises(ValueError):
        new_object_key(dek[:16])
    with pytest.raises(ValueError):
        new_object_key(dek, salt=b"\x00" * 16)


# --- metadata ---------------------------------------------------------------------------------------------------
def test_metadata_round_trip():
    header, _ = new_object_key(os.urandom(32))
    other = WrappedKey("rsa-oaep-sha256", "partner-2024", os.urandom(256))
    meta = metadata_for(header, [WRAPPED, other])
    assert set(meta) == {"envelope-header", "envelope-key-0", "envelope-key-1"}
    assert all(name == name.lower() and value.isascii() for name, value in meta.items())
    assert len(meta["envelope-header"]) == 91 and "=" not in meta["envelope-header"]
    assert meta["envelope-key-0"].startswith(f"kms;{ARN};")
    assert parse_metadata(meta) == (header, [WRAPPED, other])
    # Names as a store might spell them, beside the client's own metadata.
    shouted = {name.upper(): value for name, value in meta.items()} | {"owner": "alice", "envelope-future": "x"}
    assert parse_metadata(shouted) == (header, [WRAPPED, other])
    with pytest.raises(ValueError):
        metadata_for(header, [])


def test_wrapped_keys_are_returned_in_numeric_index_order_with_unknown_schemes():
    header, _ = new_object_key(os.urandom(32))
    keys = {i: WrappedKey("kms" if i % 2 else "future-scheme", f"id-{i}", bytes([i + 1])) for i in range(12)}
    meta = {META_HEADER: envelope._b64encode(header.encode())}
    meta |= {f"envelope-key-{i}": keys[i].encode() for i in reversed(range(12))}
    assert parse_metadata(meta)[1] == [keys[i] for i in range(12)]


@pytest.mark.parametrize("meta", [{}, {"owner": "alice"}, {"x-amz-meta-envelope-header": "shifted"}])
def test_absent_envelope_is_not_encrypted(meta):
    with pytest.raises(errors.NotEncrypted):
        parse_metadata(meta)


@pytest.mark.parametrize("change", [
    {"envelope-header": None},  # keys without a header
    {"envelope-header": "forged"},
    {"envelope-header": ""},
    {"envelope-key-01": WRAPPED.encode()},  # non-canonical index
    {"envelope-key-x": WRAPPED.encode()},
    {"envelope-key-0": "kms;only-two"},
    {"envelope-key-0": f"kms;{ARN};AAAA;extra"},
    {"envelope-key-0": f"kms;{ARN};"},  # empty blob
    {"envelope-key-0": f"KMS;{ARN};AAAA"},  # scheme must be lowercase
    {"envelope-key-0": "kms;;AAAA"},  # empty key id
    {"envelope-key-0": f"kms;{ARN};AAA="},  # padded
    {"envelope-key-0": f"kms;{ARN};AAB"},  # non-canonical base64url (spare bits set)
    {"envelope-key-0": f"kms;{ARN};A+/A"},  # standard, not url-safe, alphabet
    {"ENVELOPE-KEY-0": WRAPPED.encode()},  # the same name twice, differently spelled
])
def test_malformed_metadata_is_tampering(change):
    header, _ = new_object_key(os.urandom(32))
    meta: dict[str, str] = metadata_for(header, [WRAPPED])
    for name, value in change.items():
        if value is None:
            meta.pop(name)
        else:
            meta[name] = value
    with pytest.raises(errors.TamperedCiphertext):
        parse_metadata(meta)


def test_header_b64_canonical_and_padded_forms():
    header, _ = new_object_key(os.urandom(32))
    good = envelope._b64encode(header.encode())
    meta = {"envelope-key-0": WRAPPED.encode()}
    for bad in (good + "=", good + "==", good + "A", good[:-1], " " + good, "+" + good[1:], "/" + good[1:]):
        with pytest.raises(errors.TamperedCiphertext):
            parse_metadata(meta | {META_HEADER: bad})
    # 68 bytes = 544 bits in 91 characters: the last character carries 2 spare bits that must be zero.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    spare = good[:-1] + alphabet[alphabet.index(good[-1]) | 1]
    assert spare != good
    with pytest.raises(errors.TamperedCiphertext):
        parse_metadata(meta | {META_HEADER: spare})


def test_encryption_context_names_the_object():
    assert encryption_context("b", "k/ey") == {"envelope-gateway:bucket": "b", "envelope-gateway:key": "k/ey"}


# --- hygiene: no key material in reprs or errors ----------------------------------------------------------------
def test_no_key_material_in_reprs():
    dek = os.urandom(32)
    header, key = new_object_key(dek)
    assert repr(key) == "ObjectKey(<hidden>)" and str(key) == repr(key)
    assert not hasattr(key, "__dict__")
    with pytest.raises(TypeError):
        pickle.dumps(key)
    assert dek.hex() not in repr(header)
    blob = os.urandom(64)
    text = repr(WrappedKey("kms", ARN, blob))
    assert blob.hex() not in text and "64 bytes" in text and ARN in text
    assert isinstance(key, ObjectKey)


def test_tamper_errors_carry_no_data():
    dek, header, plaintext, stored = _store(100, seed=9)
    tampered = bytearray(stored)
    tampered[3] ^= 1
    with pytest.raises(errors.TamperedCiphertext) as err:
        read_whole(dek, header, tampered)
    text = repr(err.value) + str(err.value) + repr(err.value.fields)
    assert dek.hex() not in text and plaintext[:8].hex() not in text
    assert err.value.__cause__ is None and err.value.__suppress_context__


@settings(max_examples=150, deadline=None)
@given(size=st.integers(0, 3 * S + 40), cuts=st.lists(st.integers(0, 3 * S + 40), max_size=12), final=st.booleans())
def test_pieces_seal_and_open_exactly_like_one_buffer(size, cuts, final):
    """A batch given as the network's pieces (any cut points, empty pieces too) seals and opens to the very
    bytes of the same batch given whole."""
    if not final:
        size -= size % S
    data = os.urandom(size)
    _, key = new_object_key(bytes(range(32)), salt=bytes(32))
    edges = [0, *sorted(c for c in cuts if c <= size), size]
    pieces = [data[a:b] for a, b in zip(edges, edges[1:])]
    sealed = seal_batch(key, 3 if size else 0, data, final=final)
    assert seal_batch(key, 3 if size else 0, pieces, final=final) == sealed
    stored_edges = [0, *sorted(c * len(sealed) // max(1, size + 1) for c in cuts), len(sealed)]
    stored_pieces = [memoryview(sealed)[a:b] for a, b in zip(stored_edges, stored_edges[1:])]
    if sealed:
        final_index = (3 if size else 0) + max(1, -(-size // S)) - 1 if final else 10**6
        assert open_batch(key, 3 if size else 0, stored_pieces, final_index) == data
