"""Generated object bodies (gateway/bench/datagen.py) and the client's body framing helpers."""
from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.bench.client import aws_chunked_length, chunk_sizes, crc32_b64
from gateway.bench.datagen import (PATTERN_BYTES, STAMP_EVERY_BYTES, Crc64, PatternData, new_digest, object_seed)

SIZE = 3 * PATTERN_BYTES + 12345


def _whole(data: PatternData) -> bytes:
    return b"".join(bytes(c) for c in data.chunks())


def test_same_seed_same_bytes_and_different_seeds_differ():
    a, b, c = PatternData(7, 300_000), PatternData(7, 300_000), PatternData(8, 300_000)
    assert _whole(a) == _whole(b)
    assert _whole(a) != _whole(c)
    assert len(_whole(a)) == 300_000


def test_chunks_are_fresh_buffers_of_at_most_the_chunk_size():
    data = PatternData(1, SIZE)
    pieces = list(data.chunks(chunk_bytes=256 * 1024))
    assert all(0 < len(p) <= 256 * 1024 for p in pieces)
    assert sum(len(p) for p in pieces) == SIZE
    assert len({id(p) for p in pieces}) == len(pieces)


def test_no_two_64k_blocks_of_an_object_are_equal():
    body = _whole(PatternData(3, 4 * PATTERN_BYTES))
    blocks = [body[i:i + STAMP_EVERY_BYTES] for i in range(0, len(body), STAMP_EVERY_BYTES)]
    assert len(set(blocks)) == len(blocks)


@settings(max_examples=60, deadline=None)
@given(start=st.integers(0, SIZE), length=st.integers(0, 2 * PATTERN_BYTES + 100))
def test_any_range_regenerates_the_same_bytes_as_the_whole(start, length):
    data = PatternData(11, SIZE)
    end = min(SIZE, start + length)
    whole = _whole_cached()
    assert b"".join(bytes(c) for c in data.chunks(start, end)) == whole[start:end]
    expected = hashlib.sha256(whole[start:end]).hexdigest()
    assert data.digest("sha256", start, end) == expected


_CACHE: dict[str, bytes] = {}


def _whole_cached() -> bytes:
    if "w" not in _CACHE:
        _CACHE["w"] = _whole(PatternData(11, SIZE))
    return _CACHE["w"]


def test_empty_object_and_bad_ranges():
    assert list(PatternData(1, 0).chunks()) == []
    with pytest.raises(ValueError):
        PatternData(1, 10).chunk(5, 11)
    with pytest.raises(ValueError):
        list(PatternData(1, 10).chunks(4, 2))
    with pytest.raises(ValueError):
        PatternData(1, -1)


def test_crc64_digest_is_incremental_and_differs_from_sha256():
    payload = _whole(PatternData(5, 200_000))
    one, two = Crc64(), new_digest("crc64nvme")
    one.update(payload)
    two.update(payload[:70_000])
    two.update(memoryview(payload)[70_000:])
    assert one.hexdigest() == two.hexdigest()
    assert len(one.hexdigest()) == 16
    assert new_digest("sha256").hexdigest() != new_digest("crc64nvme").hexdigest()
    with pytest.raises(ValueError):
        new_digest("md5")


def test_object_seed_is_stable_and_63_bits():
    assert object_seed("w", "gateway", 0, 1) == object_seed("w", "gateway", 0, 1)
    assert object_seed("w", "gateway", 0, 1) != object_seed("w", "gateway", 1, 1)
    assert 0 <= object_seed("x") < 2**63


@given(size=st.integers(0, 3 * PATTERN_BYTES), chunk=st.integers(1, 2 * PATTERN_BYTES))
@settings(max_examples=50, deadline=None)
def test_chunk_sizes_match_the_generator(size, chunk):
    data = PatternData(2, size)
    assert list(chunk_sizes(size, chunk)) == [len(c) for c in data.chunks(chunk_bytes=chunk)]


def test_aws_chunked_length_matches_the_encoded_body():
    import asyncio

    from gateway.bench.client import S3Client
    from gateway.s3.chunked import AwsChunkedDecoder
    from gateway.s3.sigv4 import Credentials

    data = PatternData(9, PATTERN_BYTES + 777)
    client = S3Client("http://127.0.0.1:9", Credentials("a", "b"), "us-east-1", connections=1,
                      chunk_bytes=300_000)
    digest = new_digest("crc64nvme")
    encoded = b"".join(bytes(p) for p in client._aws_chunked_body(data, digest))
    trailer = b"x-amz-checksum-crc32:" + b"A" * 8
    assert len(encoded) == aws_chunked_length(data.size, 300_000, trailer)
    decoder = AwsChunkedDecoder(None, expect_trailer=True, decoded_length=data.size)
    decoded = b"".join(bytes(p) for p in decoder.feed(encoded))
    trailers = decoder.finish()
    assert decoded == _whole(data)
    from awscrt import checksums

    assert trailers["x-amz-checksum-crc32"] == crc32_b64(checksums.crc32(decoded))
    asyncio.run(client.close())
