import base64
import hashlib

import pytest
from botocore import httpchecksum
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from gateway import errors
from gateway.s3.checksums import BodyChecks, is_checksum_header

HELLO = b"hello world"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def botocore_value(algorithm: str, data: bytes) -> str:
    cls = {"crc32": httpchecksum.CrtCrc32Checksum, "crc32c": httpchecksum.CrtCrc32cChecksum,
           "crc64nvme": httpchecksum.CrtCrc64NvmeChecksum, "sha1": httpchecksum.Sha1Checksum,
           "sha256": httpchecksum.Sha256Checksum}[algorithm]
    checksum = cls()
    checksum.update(data)
    return checksum.b64digest()


# Independent known values (published check values and well-known digests), not computed by the code under test.
KNOWN = {
    ("crc32", b""): "AAAAAA==",
    ("crc32", HELLO): b64(bytes.fromhex("0d4a1185")),
    ("crc32", b"123456789"): b64(bytes.fromhex("cbf43926")),        # CRC-32 check value
    ("crc32c", b""): "AAAAAA==",
    ("crc32c", HELLO): b64(bytes.fromhex("c99465aa")),
    ("crc32c", b"123456789"): b64(bytes.fromhex("e3069283")),       # CRC-32C check value
    ("crc64nvme", b""): "AAAAAAAAAAA=",
    ("crc64nvme", b"123456789"): b64(bytes.fromhex("ae8b14860a799888")),  # CRC-64/NVME check value
    ("sha1", b""): b64(bytes.fromhex("da39a3ee5e6b4b0d3255bfef95601890afd80709")),
    ("sha1", HELLO): b64(bytes.fromhex("2aae6c35c94fcfb415dbe95f408b9ce91ee846ed")),
    ("sha256", b""): b64(bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")),
    ("sha256", HELLO): b64(bytes.fromhex("b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9")),
}
ALGORITHMS = ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"]


def run(headers, data: bytes, trailers=None, pieces: int = 1) -> dict[str, str]:
    checks = BodyChecks.from_headers(CIMultiDict(headers))
    step = max(1, len(data) // pieces)
    for i in range(0, len(data), step):
        checks.update(memoryview(data)[i:i + step])
    return checks.finish(trailers)


@pytest.mark.parametrize("algorithm,data", sorted(KNOWN))
def test_known_values_as_header(algorithm, data):
    value = KNOWN[algorithm, data]
    assert botocore_value(algorithm, data) == value
    echoed = run({f"x-amz-checksum-{algorithm}": value}, data)
    assert echoed == {f"x-amz-checksum-{algorithm}": value, "x-amz-checksum-type": "FULL_OBJECT"}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_hello_world_matches_botocore(algorithm):
    value = botocore_value(algorithm, HELLO)
    assert run({f"x-amz-checksum-{algorithm}": value, "x-amz-sdk-checksum-algorithm": algorithm.upper()},
               HELLO)[f"x-amz-checksum-{algorithm}"] == value


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_trailer(algorithm):
    value = botocore_value(algorithm, HELLO)
    headers = {"x-amz-trailer": f"x-amz-checksum-{algorithm}", "x-amz-sdk-checksum-algorithm": algorithm.upper()}
    assert run(headers, HELLO, {f"x-amz-checksum-{algorithm}": value})[f"x-amz-checksum-{algorithm}"] == value
    # Trailer names arrive in whatever case the client wrote.
    assert run(headers, HELLO, {f"X-Amz-Checksum-{algorithm.upper()}": value})


def test_boto3_wire_forms():
    crc = botocore_value("crc32", HELLO)
    # Plain HTTP: header + algorithm. TLS: aws-chunked with an unsigned trailer.
    assert run({"X-Amz-Checksum-Crc32": crc, "X-Amz-Sdk-Checksum-Algorithm": "CRC32"}, HELLO)
    assert run({"x-amz-trailer": "x-amz-checksum-crc32", "x-amz-sdk-checksum-algorithm": "CRC32",
                "content-encoding": "aws-chunked", "x-amz-decoded-content-length": "11"},
               HELLO, {"x-amz-checksum-crc32": crc})


@given(st.binary(max_size=4096), st.lists(st.integers(0, 4096), max_size=6), st.sampled_from(ALGORITHMS))
def test_split_updates_equal_one_update(data, cuts, algorithm):
    value = botocore_value(algorithm, data)
    checks = BodyChecks.from_headers({f"x-amz-checksum-{algorithm}": value,
                                      "content-md5": b64(hashlib.md5(data).digest())})
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    for start, end in zip(bounds, bounds[1:]):
        checks.update(memoryview(data)[start:end])
    assert checks.finish()[f"x-amz-checksum-{algorithm}"] == value


def test_update_accepts_bytes_bytearray_memoryview():
    value = botocore_value("crc64nvme", HELLO)
    checks = BodyChecks.from_headers({"x-amz-checksum-crc64nvme": value, "x-amz-sdk-checksum-algorithm": "crc64nvme"})
    checks.update(b"hel")
    checks.update(bytearray(b"lo "))
    checks.update(memoryview(b"world"))
    assert checks.finish()["x-amz-checksum-crc64nvme"] == value


def test_nothing_to_check():
    checks = BodyChecks.from_headers({"content-type": "text/plain", "x-amz-checksum-mode": "ENABLED"})
    assert not checks.active
    assert checks.finish() == {}


def test_content_md5():
    md5 = b64(hashlib.md5(HELLO).digest())
    checks = BodyChecks.from_headers({"Content-MD5": md5})
    assert checks.active
    checks.update(HELLO)
    assert checks.finish() == {}  # S3 answers Content-MD5 with the ETag, not a checksum header
    # minio-py sends the MD5 of nothing on GET/HEAD: fine with an empty body.
    assert run({"Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg=="}, b"") == {}


def test_content_md5_together_with_a_checksum():
    crc = botocore_value("crc32c", HELLO)
    assert run({"content-md5": b64(hashlib.md5(HELLO).digest()), "x-amz-checksum-crc32c": crc}, HELLO) == {
        "x-amz-checksum-crc32c": crc, "x-amz-checksum-type": "FULL_OBJECT"}


@pytest.mark.parametrize("value", ["", "not base64!", "AAAA", b64(b"x" * 15), b64(b"x" * 17),
                                   "1B2M2Y8AsgTpgAmY7PhCfg"])
def test_malformed_content_md5(value):
    with pytest.raises(errors.InvalidDigest):
        BodyChecks.from_headers({"Content-MD5": value})


def test_content_md5_mismatch():
    with pytest.raises(errors.BadDigest) as exc:
        run({"Content-MD5": b64(hashlib.md5(b"other").digest())}, HELLO)
    assert exc.value.message == "The Content-MD5 you specified did not match what we received."
    assert exc.value.status == 400


@pytest.mark.parametrize("algorithm,label", [("crc32", "CRC32"), ("crc32c", "CRC32C"), ("crc64nvme", "CRC64NVME"),
                                             ("sha1", "SHA1"), ("sha256", "SHA256")])
def test_checksum_mismatch(algorithm, label):
    wrong = botocore_value(algorithm, b"something else")
    with pytest.raises(errors.BadDigest) as exc:
        run({f"x-amz-checksum-{algorithm}": wrong}, HELLO)
    assert exc.value.message == f"The {label} you specified did not match the calculated checksum."
    with pytest.raises(errors.BadDigest):
        run({"x-amz-trailer": f"x-amz-checksum-{algorithm}"}, HELLO, {f"x-amz-checksum-{algorithm}": wrong})


@pytest.mark.parametrize("algorithm,value", [
    ("crc32", "AAAA"),                    # 3 bytes
    ("crc32", "AAAAAAAAAAA="),            # 8 bytes
    ("crc32", "not-base64"),
    ("crc32", ""),
    ("crc32c", "AAAAAA"),                 # missing padding
    ("crc64nvme", "AAAAAA=="),            # 4 bytes, needs 8
    ("sha1", b64(b"x" * 32)),
    ("sha256", b64(b"x" * 20)),
])
def test_malformed_checksum_value(algorithm, value):
    with pytest.raises(errors.InvalidRequest) as exc:
        BodyChecks.from_headers({f"x-amz-checksum-{algorithm}": value})
    assert exc.value.message == f"Value for x-amz-checksum-{algorithm} header is invalid."


def test_malformed_trailer_value():
    checks = BodyChecks.from_headers({"x-amz-trailer": "x-amz-checksum-sha1"})
    checks.update(HELLO)
    with pytest.raises(errors.InvalidRequest) as exc:
        checks.finish({"x-amz-checksum-sha1": "qvTGHdzF6KLavt4PO0gs2a6pQ00h"})
    assert exc.value.message == "Value for x-amz-checksum-sha1 trailing header is invalid."


@pytest.mark.parametrize("headers", [
    {"x-amz-checksum-crc32": "AAAAAA==", "x-amz-checksum-crc32c": "AAAAAA=="},
    {"x-amz-checksum-crc32": "", "x-amz-checksum-sha1": ""},          # even empty ones count
    {"x-amz-checksum-sha1": b64(b"x" * 20), "x-amz-trailer": "x-amz-checksum-crc64nvme"},
    {"x-amz-trailer": "x-amz-checksum-crc32, x-amz-checksum-crc32c"},
])
def test_more_than_one_checksum(headers):
    with pytest.raises(errors.InvalidRequest) as exc:
        BodyChecks.from_headers(headers)
    assert exc.value.message.startswith("Expecting a single x-amz-checksum- header")


def test_same_checksum_header_twice():
    headers = CIMultiDict([("x-amz-checksum-crc32", "AAAAAA=="), ("X-Amz-Checksum-CRC32", "AAAAAA==")])
    with pytest.raises(errors.InvalidRequest):
        BodyChecks.from_headers(headers)


def test_non_value_checksum_headers_are_not_checksums():
    # CreateMultipartUpload settings and the GET switch share the prefix but carry no value.
    checks = BodyChecks.from_headers({"x-amz-checksum-algorithm": "CRC32", "x-amz-checksum-type": "COMPOSITE",
                                      "x-amz-checksum-mode": "ENABLED", "x-amz-checksum-crc32": "DUoRhQ=="})
    checks.update(HELLO)
    assert checks.finish()["x-amz-checksum-crc32"] == "DUoRhQ=="


@pytest.mark.parametrize("algorithm", ["sha512", "md5", "xxhash64", "xxhash3", "xxhash128"])
def test_algorithms_the_gateway_cannot_verify(algorithm):
    for headers in ({f"x-amz-checksum-{algorithm}": "AAAAAA=="},
                    {"x-amz-trailer": f"x-amz-checksum-{algorithm}"},
                    {"x-amz-sdk-checksum-algorithm": algorithm.upper(), "x-amz-checksum-crc32": "AAAAAA=="}):
        with pytest.raises(errors.InvalidRequest) as exc:
            BodyChecks.from_headers(headers)
        assert "cannot verify" in exc.value.message


def test_unknown_algorithm():
    with pytest.raises(errors.InvalidRequest) as exc:
        BodyChecks.from_headers({"x-amz-checksum-sha256a": "dummy"})
    assert exc.value.message == "The algorithm type you specified in x-amz-checksum- header is invalid."
    with pytest.raises(errors.InvalidRequest) as exc:
        BodyChecks.from_headers({"x-amz-trailer": "x-amz-checksum-crc16"})
    assert exc.value.message == "The algorithm type you specified in x-amz-checksum- header is invalid."
    with pytest.raises(errors.InvalidRequest) as exc:
        BodyChecks.from_headers({"x-amz-sdk-checksum-algorithm": "crc16", "x-amz-checksum-crc32": "AAAAAA=="})
    assert exc.value.message == "Value for x-amz-sdk-checksum-algorithm header is invalid."


def test_sdk_algorithm_must_match_the_value():
    for headers in ({"x-amz-sdk-checksum-algorithm": "crc32", "x-amz-checksum-crc32c": "ImIEBA=="},
                    {"x-amz-sdk-checksum-algorithm": "sha1", "x-amz-trailer": "x-amz-checksum-crc64nvme"}):
        with pytest.raises(errors.InvalidRequest) as exc:
            BodyChecks.from_headers(headers)
        assert exc.value.message == "Value for x-amz-sdk-checksum-algorithm header is invalid."


def test_sdk_algorithm_without_a_value_is_refused_as_aws_does():
    with pytest.raises(errors.InvalidRequest) as exc:
        BodyChecks.from_headers({"x-amz-sdk-checksum-algorithm": "CRC32"})
    assert exc.value.message == ("x-amz-sdk-checksum-algorithm specified, but no corresponding x-amz-checksum-* "
                                 "or x-amz-trailer headers were found.")


def test_trailer_problems():
    def announced():
        checks = BodyChecks.from_headers({"x-amz-trailer": "x-amz-checksum-crc32"})
        checks.update(HELLO)
        return checks

    crc = botocore_value("crc32", HELLO)
    for trailers in (None, {}, {"x-amz-checksum-crc32c": botocore_value("crc32c", HELLO)},
                     {"x-amz-checksum-crc32": crc, "x-amz-checksum-sha1": botocore_value("sha1", HELLO)}):
        with pytest.raises(errors.MalformedTrailerError) as exc:
            announced().finish(trailers)
        assert exc.value.code == "MalformedTrailerError" and exc.value.status == 400
    # A checksum trailer nobody announced.
    checks = BodyChecks.from_headers({})
    with pytest.raises(errors.MalformedTrailerError):
        checks.finish({"x-amz-checksum-crc32": crc})
    # Other trailer lines (none are defined, but a decoder may pass them on) are not checksums.
    assert BodyChecks.from_headers({}).finish({"x-amz-something": "1"}) == {}


def test_non_checksum_trailer_announcement_is_refused():
    with pytest.raises(errors.InvalidRequest):
        BodyChecks.from_headers({"x-amz-trailer": "x-amz-meta-late"})


def test_finish_twice_is_a_bug():
    checks = BodyChecks.from_headers({})
    checks.finish()
    with pytest.raises(RuntimeError):
        checks.finish()


def test_checksum_headers_are_recognised():
    headers = {"Content-MD5": "x", "x-amz-checksum-crc32": "x", "X-Amz-Checksum-Sha256": "x",
               "x-amz-sdk-checksum-algorithm": "CRC32", "x-amz-trailer": "x-amz-checksum-crc32",
               "x-amz-decoded-content-length": "5", "x-amz-checksum-algorithm": "CRC32",
               "x-amz-checksum-type": "FULL_OBJECT", "x-amz-mp-object-size": "5",
               "Content-Type": "text/plain", "x-amz-meta-a": "b", "Content-Length": "5"}
    assert {k: v for k, v in headers.items() if not is_checksum_header(k)} == {
        "Content-Type": "text/plain", "x-amz-meta-a": "b", "Content-Length": "5"}
    assert is_checksum_header("X-AMZ-CHECKSUM-CRC64NVME")
    assert not is_checksum_header("x-amz-content-sha256")
