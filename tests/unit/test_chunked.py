"""aws-chunked decoding: AWS's streaming examples, tampering, arbitrary feed boundaries, truncation, bounds."""
from __future__ import annotations

import base64
import datetime
import hashlib
import io
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import errors
from gateway.s3.chunked import AwsChunkedDecoder
from gateway.s3.sigv4 import (
    STREAMING_SIGNED,
    STREAMING_SIGNED_TRAILER,
    ChunkSigner,
    VerifiedRequest,
    chunk_signature,
    trailer_signature,
    verify_request,
)

AK = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
EXAMPLE_TIME = datetime.datetime(2013, 5, 24, tzinfo=datetime.timezone.utc)
DATA = b"a" * 66560

# sigv4-streaming and sigv4-streaming-trailers: seed, chunk signatures (64 KiB, 1 KiB, final) and trailer.
SIGNED = {
    "signed_headers": "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
                      "x-amz-decoded-content-length;x-amz-storage-class",
    "seed": "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
    "chunks": ["ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
               "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
               "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"],
}
SIGNED_TRAILER = {
    "signed_headers": "content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;"
                      "x-amz-storage-class;x-amz-trailer",
    "seed": "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e",
    "chunks": ["b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
               "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
               "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992"],
    "trailer": b"x-amz-checksum-crc32c:sOO8/Q==",
    "trailer_signature": "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435",
}


def example_verified(trailer: bool) -> VerifiedRequest:
    """The example request authenticated by verify_request: the decoder's signer chains from its seed."""
    example = SIGNED_TRAILER if trailer else SIGNED
    headers = [("Host", "s3.amazonaws.com"), ("x-amz-date", "20130524T000000Z"),
               ("x-amz-storage-class", "REDUCED_REDUNDANCY"), ("Content-Encoding", "aws-chunked"),
               ("x-amz-content-sha256", STREAMING_SIGNED_TRAILER if trailer else STREAMING_SIGNED),
               ("x-amz-decoded-content-length", "66560")]
    headers.append(("x-amz-trailer", "x-amz-checksum-crc32c") if trailer else ("Content-Length", "66824"))
    headers.append(("Authorization", f"AWS4-HMAC-SHA256 Credential={AK}/20130524/us-east-1/s3/aws4_request,"
                                     f"SignedHeaders={example['signed_headers']},Signature={example['seed']}"))
    return verify_request("PUT", "/examplebucket/chunkObject.txt", "", headers, lambda ak: SECRET, EXAMPLE_TIME)


def example_body(trailer: bool) -> bytes:
    example = SIGNED_TRAILER if trailer else SIGNED
    sigs = example["chunks"]
    body = (f"10000;chunk-signature={sigs[0]}\r\n".encode() + DATA[:65536] + b"\r\n"
            + f"400;chunk-signature={sigs[1]}\r\n".encode() + DATA[65536:] + b"\r\n"
            + f"0;chunk-signature={sigs[2]}\r\n".encode())
    if trailer:
        body += example["trailer"] + b"\r\nx-amz-trailer-signature:" + example["trailer_signature"].encode() + b"\r\n"
    return body + b"\r\n"


def example_decoder(trailer: bool, decoded_length: int | None = 66560, **kwargs) -> AwsChunkedDecoder:
    return AwsChunkedDecoder(ChunkSigner(example_verified(trailer)), trailer, decoded_length, **kwargs)


def decode(decoder: AwsChunkedDecoder, pieces) -> tuple[bytes, dict[str, str]]:
    out = bytearray()
    for piece in pieces:
        for decoded in decoder.feed(piece):
            out += decoded
    return bytes(out), decoder.finish()


def split_at(data: bytes, cuts) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]


# --- helpers that build bodies (the tests' own encoder) ----------------------------------------------------

def _key(verified: VerifiedRequest) -> tuple[bytes, str, str]:
    return verified.key, verified.amz_date, verified.scope


def encode_signed(data: bytes, chunk_sizes, verified: VerifiedRequest,
                  trailers: list[tuple[str, str]] | None = None) -> bytes:
    key, amz_date, scope = _key(verified)
    out, previous, pos = bytearray(), verified.signature, 0
    sizes = list(chunk_sizes)
    while pos < len(data):
        size = max(1, sizes.pop(0) if sizes else len(data) - pos)
        chunk = data[pos:pos + size]
        previous = chunk_signature(key, amz_date, scope, previous, hashlib.sha256(chunk).hexdigest())
        out += f"{len(chunk):x};chunk-signature={previous}\r\n".encode() + chunk + b"\r\n"
        pos += len(chunk)
    previous = chunk_signature(key, amz_date, scope, previous, hashlib.sha256(b"").hexdigest())
    out += f"0;chunk-signature={previous}\r\n".encode()
    if trailers is not None:
        for name, value in trailers:
            out += f"{name}:{value}\r\n".encode()
        out += f"x-amz-trailer-signature:{trailer_signature(key, amz_date, scope, previous, trailers)}\r\n".encode()
    return bytes(out + b"\r\n")


def encode_unsigned(data: bytes, chunk_sizes, trailers: list[tuple[str, str]]) -> bytes:
    out, pos, sizes = bytearray(), 0, list(chunk_sizes)
    while pos < len(data):
        size = max(1, sizes.pop(0) if sizes else len(data) - pos)
        chunk = data[pos:pos + size]
        out += f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        pos += len(chunk)
    out += b"0\r\n" + b"".join(f"{n}:{v}\r\n".encode() for n, v in trailers) + b"\r\n"
    return bytes(out)


# --- AWS's published examples ------------------------------------------------------------------------------

@pytest.mark.parametrize("trailer", [False, True])
def test_aws_streaming_examples_decode(trailer):
    decoder = example_decoder(trailer)
    pieces = decoder.feed(example_body(trailer))
    assert decoder.done
    assert all(isinstance(p, memoryview) for p in pieces)
    assert b"".join(pieces) == DATA
    assert decoder.finish() == ({"x-amz-checksum-crc32c": "sOO8/Q=="} if trailer else {})


def test_aws_example_signatures_chain_through_the_helpers():
    verified = example_verified(False)
    assert encode_signed(DATA, [65536, 1024], verified) == example_body(False)
    verified = example_verified(True)
    assert encode_signed(DATA, [65536, 1024], verified, [("x-amz-checksum-crc32c", "sOO8/Q==")]) \
        == example_body(True)


def test_output_pieces_are_zero_copy_views():
    body = example_body(False)
    pieces = example_decoder(False).feed(body)
    assert [len(p) for p in pieces] == [65536, 1024]
    assert all(p.obj is body for p in pieces)


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_accepts_any_buffer(kind):
    body = example_body(True)
    assert decode(example_decoder(True), [kind(body[:70000]), kind(body[70000:])])[0] == DATA


def _replace_once(body: bytes, old: bytes, new: bytes) -> bytes:
    assert body.count(old) >= 1
    return body.replace(old, new, 1)


def _tampered_bodies():
    signed, trailed = example_body(False), example_body(True)
    sigs = SIGNED["chunks"]
    chunk1 = f"10000;chunk-signature={sigs[0]}\r\n".encode() + DATA[:65536] + b"\r\n"
    chunk2 = f"400;chunk-signature={sigs[1]}\r\n".encode() + DATA[65536:] + b"\r\n"
    final = f"0;chunk-signature={sigs[2]}\r\n\r\n".encode()
    yield "first chunk data", False, signed[:200] + b"b" + signed[201:]
    yield "second chunk data", False, _replace_once(signed, b"a\r\n0;", b"b\r\n0;")
    yield "chunk signature", False, _replace_once(signed, sigs[1].encode(), b"0" * 64)
    yield "final signature", False, _replace_once(signed, sigs[2].encode(), sigs[1].encode())
    yield "chunks reordered", False, chunk2 + chunk1 + final
    yield "chunk dropped", False, chunk1 + final
    yield "chunk duplicated", False, chunk1 + chunk1 + chunk2 + final
    yield "trailer value", True, _replace_once(trailed, b"sOO8/Q==", b"AAAAAA==")
    yield "trailer name", True, _replace_once(trailed, b"x-amz-checksum-crc32c", b"x-amz-checksum-crc32")
    yield "trailer added", True, _replace_once(trailed, b"sOO8/Q==\r\n", b"sOO8/Q==\r\nx-amz-meta-x:1\r\n")
    yield "trailer dropped", True, _replace_once(trailed, SIGNED_TRAILER["trailer"] + b"\r\n", b"")
    yield "trailer signature", True, _replace_once(trailed, SIGNED_TRAILER["trailer_signature"].encode(),
                                                   SIGNED_TRAILER["chunks"][2].encode())
    yield "trailer signature missing", True, _replace_once(
        trailed, b"x-amz-trailer-signature:" + SIGNED_TRAILER["trailer_signature"].encode() + b"\r\n", b"")
    yield "signed-payload body under another seed", True, signed


@pytest.mark.parametrize("name, trailer, body", list(_tampered_bodies()), ids=[c[0] for c in _tampered_bodies()])
def test_tampering_is_signature_mismatch(name, trailer, body):
    with pytest.raises(errors.SignatureDoesNotMatch):
        decode(example_decoder(trailer, decoded_length=None), [body])


def test_signed_chunk_without_signature_is_refused():
    body = example_body(False).replace(b";chunk-signature=" + SIGNED["chunks"][1].encode(), b"", 1)
    with pytest.raises(errors.InvalidRequest):
        decode(example_decoder(False), [body])


def test_trailer_on_a_body_that_announced_none():
    body = example_body(False)[:-2] + b"x-amz-checksum-crc32:AAAAAA==\r\n\r\n"
    with pytest.raises(errors.InvalidRequest):
        decode(example_decoder(False), [body])


# --- feed boundaries ---------------------------------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=70000), max_size=30), trailer=st.booleans())
def test_any_feed_boundaries_give_identical_output(cuts, trailer):
    body = example_body(trailer)
    data, trailers = decode(example_decoder(trailer), split_at(body, cuts))
    assert data == DATA
    assert trailers == ({"x-amz-checksum-crc32c": "sOO8/Q=="} if trailer else {})


def test_every_split_point_near_the_framing():
    body = example_body(True)
    interesting = [i for i in range(len(body)) if i < 200 or 65600 < i < 65800 or i > len(body) - 250]
    for cut in interesting:
        assert decode(example_decoder(True), [body[:cut], body[cut:]])[0] == DATA


def test_one_byte_at_a_time():
    verified = example_verified(True)
    data = bytes(range(256)) * 3
    body = encode_signed(data, [100, 1, 300], verified, [("x-amz-checksum-crc32", "AAAAAA==")])
    decoder = AwsChunkedDecoder(ChunkSigner(verified), True, len(data))
    out, trailers = decode(decoder, [body[i:i + 1] for i in range(len(body))])
    assert out == data and trailers == {"x-amz-checksum-crc32": "AAAAAA=="}


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=3000), sizes=st.lists(st.integers(1, 700), max_size=10),
       cuts=st.lists(st.integers(0, 5000), max_size=20), signed=st.booleans(),
       trailers=st.lists(st.sampled_from([("x-amz-checksum-crc32", "NSRBwg=="), ("x-amz-checksum-sha256", "47DEQ="),
                                          ("x-amz-meta-x", "a b")]), max_size=3, unique_by=lambda t: t[0]))
def test_random_bodies_round_trip(data, sizes, cuts, signed, trailers):
    if signed:
        verified = example_verified(True)
        body = encode_signed(data, sizes, verified, trailers)
        decoder = AwsChunkedDecoder(ChunkSigner(verified), True, len(data))
    else:
        body = encode_unsigned(data, sizes, trailers)
        decoder = AwsChunkedDecoder(None, True, len(data))
    out, got = decode(decoder, split_at(body, cuts))
    assert out == data
    assert got == dict(trailers)


# --- truncation and lengths --------------------------------------------------------------------------------

def test_every_truncation_is_incomplete_body():
    verified = example_verified(True)
    data = b"0123456789" * 3
    body = encode_signed(data, [7, 7], verified, [("x-amz-checksum-crc32", "AAAAAA==")])
    for end in range(len(body)):
        decoder = AwsChunkedDecoder(ChunkSigner(verified), True, len(data))
        decoder.feed(body[:end])
        assert not decoder.done
        with pytest.raises(errors.IncompleteBody):
            decoder.finish()
    decoder = AwsChunkedDecoder(ChunkSigner(verified), True, len(data))
    decoder.feed(body)
    assert decoder.done


def test_truncated_aws_example_is_incomplete_body():
    decoder = example_decoder(False)
    decoder.feed(example_body(False)[:-2])
    with pytest.raises(errors.IncompleteBody):
        decoder.finish()


def test_decoded_length_must_match():
    with pytest.raises(errors.IncompleteBody):
        decode(example_decoder(True, decoded_length=66561), [example_body(True)])
    with pytest.raises(errors.IncompleteBody):  # refused at the chunk header, before its data arrives
        example_decoder(True, decoded_length=65535).feed(example_body(True)[:100])
    assert decode(example_decoder(True, decoded_length=None), [example_body(True)])[0] == DATA


def test_data_after_the_end_is_refused():
    decoder = AwsChunkedDecoder(None, False, None)
    with pytest.raises(errors.InvalidRequest):
        decoder.feed(b"1\r\nA\r\n0\r\n\r\nX")


def test_empty_body():
    decoder = AwsChunkedDecoder(None, True, 0)
    assert decoder.feed(b"0\r\n\r\n") == []
    assert decoder.finish() == {}
    decoder = AwsChunkedDecoder(None, True, 0)
    with pytest.raises(errors.IncompleteBody):
        decoder.finish()


# --- malformed framing and bounds --------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    b"zz\r\n",
    b"+1\r\nA\r\n0\r\n\r\n",
    b" 1\r\nA\r\n0\r\n\r\n",
    b"0x1\r\nA\r\n0\r\n\r\n",
    b"-1\r\n",
    b"\r\n",
    b"1\nA\r\n0\r\n\r\n",                     # bare LF
    b"1\r\nAB\r\n0\r\n\r\n",                   # size too small for the data
    b"1\r\nA\n0\r\n\r\n",
    b"1;foo=bar\r\nA\r\n0\r\n\r\n",            # chunk extensions are not part of the unsigned format
    b"1;chunk-signature=" + b"0" * 64 + b"\r\nA\r\n0\r\n\r\n",
    b"11111111111111111\r\n",                 # 17 hex digits
    b"0\r\nno-colon\r\n\r\n",
    b"0\r\nbad name:v\r\n\r\n",
    b"0\r\n:v\r\n\r\n",
    b"0\r\nx-amz-checksum-crc32:\xff\r\n\r\n",
    b"0\r\nx-amz-checksum-crc32:A\r\nx-amz-checksum-crc32:B\r\n\r\n",
    b"0\r\nx-amz-trailer-signature:" + b"0" * 64 + b"\r\n\r\n",  # a signature on an unsigned body
    b"0\r\nx-amz-checksum-crc32:A\n\r\n",
])
def test_malformed_unsigned_bodies(body):
    with pytest.raises(errors.InvalidRequest):
        decode(AwsChunkedDecoder(None, True, None), [body])


@pytest.mark.parametrize("body", [
    b"1\r\nA\r\n0\r\n\r\n",                                                     # no signature
    b"1;chunk-signature=" + b"A" * 64 + b"\r\nA\r\n0\r\n\r\n",                  # uppercase hex
    b"1;chunk-signature=" + b"0" * 63 + b"\r\nA\r\n",
    b"1;chunk-signature =" + b"0" * 64 + b"\r\nA\r\n",
    b"1;chunk-signature=" + b"0" * 64 + b";x=y\r\nA\r\n",
])
def test_malformed_signed_headers(body):
    with pytest.raises(errors.InvalidRequest):
        decode(example_decoder(False, decoded_length=None), [body])


def test_trailer_signature_must_come_last():
    verified = example_verified(True)
    body = encode_signed(b"abc", [], verified, [("x-amz-checksum-crc32", "NSRBwg==")])
    body = body[:-2] + b"x-amz-meta-late:1\r\n\r\n"
    with pytest.raises(errors.InvalidRequest):
        decode(AwsChunkedDecoder(ChunkSigner(verified), True, None), [body])


@pytest.mark.parametrize("piece_size", [1, 7, 100, 100000])
def test_oversized_chunk_header_is_refused_without_buffering_it(piece_size):
    decoder = AwsChunkedDecoder(None, False, None, max_chunk_header_bytes=64)
    line = b"1" * 10 + b";" + b"x" * 100000
    fed = 0
    with pytest.raises(errors.InvalidRequest, match="too long"):
        for i in range(0, len(line), piece_size):
            decoder.feed(line[i:i + piece_size])
            fed += piece_size
    assert fed <= 64
    assert len(decoder._line) < 64


def test_header_line_at_the_limit_is_accepted():
    decoder = AwsChunkedDecoder(None, False, None, max_chunk_header_bytes=8)
    assert b"".join(decoder.feed(b"000001\r\nA\r\n0\r\n\r\n")) == b"A"   # 8 bytes with CRLF
    decoder = AwsChunkedDecoder(None, False, None, max_chunk_header_bytes=8)
    with pytest.raises(errors.InvalidRequest):
        decoder.feed(b"0000001\r\nA\r\n0\r\n\r\n")


def test_oversized_trailer_section_is_refused():
    lines = b"".join(b"x-amz-meta-%d:%s\r\n" % (i, b"v" * 100) for i in range(200))
    with pytest.raises(errors.InvalidRequest, match="too long"):
        decode(AwsChunkedDecoder(None, True, None), [b"0\r\n", lines, b"\r\n"])
    decoder = AwsChunkedDecoder(None, True, None, max_trailer_bytes=1 << 20)
    assert len(decode(decoder, [b"0\r\n", lines, b"\r\n"])[1]) == 200


def test_an_error_is_final():
    decoder = AwsChunkedDecoder(None, False, None)
    with pytest.raises(errors.InvalidRequest):
        decoder.feed(b"zz\r\n")
    with pytest.raises(errors.InvalidRequest):
        decoder.feed(b"0\r\n\r\n")
    with pytest.raises(errors.InvalidRequest):
        decoder.finish()


# --- real clients ------------------------------------------------------------------------------------------

def test_botocore_unsigned_trailer_body_decodes():
    """What boto3 sends over HTTPS (STREAMING-UNSIGNED-PAYLOAD-TRAILER): botocore's own encoder."""
    httpchecksum = pytest.importorskip("botocore.httpchecksum")
    data = bytes(range(256)) * 9000  # > 2 MiB: several of botocore's 1 MiB chunks
    wrapper = httpchecksum.AwsChunkedWrapper(io.BytesIO(data), checksum_cls=httpchecksum.Crc32Checksum,
                                             checksum_name="x-amz-checksum-crc32")
    body = wrapper.read()
    decoder = AwsChunkedDecoder(None, True, len(data))
    out, trailers = decode(decoder, split_at(body, range(0, len(body), 65536)))
    assert out == data
    expected = base64.b64encode((zlib.crc32(data) & 0xFFFFFFFF).to_bytes(4, "big")).decode()
    assert trailers == {"x-amz-checksum-crc32": expected}


def test_large_body_is_decoded_in_few_pieces():
    data = b"\x00" * (8 << 20)
    body = encode_unsigned(data, [1 << 20] * 8, [])
    pieces = []
    decoder = AwsChunkedDecoder(None, False, len(data))
    for i in range(0, len(body), 1 << 16):
        pieces += decoder.feed(body[i:i + (1 << 16)])
    decoder.finish()
    assert sum(map(len, pieces)) == len(data)
    assert len(pieces) <= len(body) // (1 << 16) + 1 + 8
