"""The aws-chunked decoder (gateway.s3.chunked, unsigned variants): any byte stream fed in any split gives data
and trailers or an S3Error; valid encodings round-trip whatever the split."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway import errors
from gateway.s3.chunked import AwsChunkedDecoder


def _encode(data: bytes, sizes: list[int], trailers: list[tuple[str, str]]) -> bytes:
    out, pos = bytearray(), 0
    while pos < len(data):
        size = max(1, sizes.pop(0) if sizes else len(data) - pos)
        chunk = data[pos:pos + size]
        out += f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        pos += len(chunk)
    return bytes(out + b"0\r\n" + b"".join(f"{n}:{v}\r\n".encode() for n, v in trailers) + b"\r\n")


def _split(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(body)) for c in cuts})
    return [body[a:b] for a, b in zip([0, *points], [*points, len(body)])]


def _decode(body: bytes, cuts: list[int], trailer: bool, length: int | None) -> tuple[bytes, dict[str, str]]:
    decoder = AwsChunkedDecoder(None, expect_trailer=trailer, decoded_length=length)
    data = bytearray()
    for piece in _split(body, cuts):
        for out in decoder.feed(piece):
            data += out
    return bytes(data), decoder.finish()


_PIECES = st.sampled_from([b"0", b"1", b"a", b"f" * 17, b"9" * 5000, b";", b"chunk-signature=", b"\r\n", b"\r",
                           b"\n", b"x-amz-checksum-crc32:AAAAAA==", b":", b" ", b"\x00", b"\xff", b"-1", b"+1"])


@given(st.one_of(st.binary(max_size=300), st.lists(_PIECES, max_size=20).map(b"".join)),
       st.lists(st.integers(0, 300), max_size=6), st.booleans(), st.one_of(st.none(), st.integers(0, 100)))
def test_any_stream_in_any_split_gives_data_or_an_s3_error(body, cuts, trailer, length) -> None:
    try:
        data, trailers = _decode(body, cuts, trailer, length)
    except errors.S3Error as exc:
        assert exc.status < 500
        return
    assert length is None or len(data) == length
    assert isinstance(trailers, dict)


@given(st.binary(max_size=2000), st.lists(st.integers(1, 700), max_size=5), st.lists(st.integers(0, 2100),
       max_size=8), st.booleans())
def test_valid_encodings_round_trip_in_any_split(data, sizes, cuts, trailer) -> None:
    trailers = [("x-amz-checksum-crc32", "AAAAAA==")] if trailer else []
    decoded, got = _decode(_encode(data, list(sizes), trailers), cuts, trailer, len(data))
    assert decoded == data
    assert got == dict(trailers)
