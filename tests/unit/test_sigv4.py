"""SigV4: AWS's published S3 examples, tampering, error cases, sign/verify round trips and botocore cross-checks."""
from __future__ import annotations

import datetime
import re
from urllib.parse import quote, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import errors
from gateway.s3 import sigv4
from gateway.s3.sigv4 import (
    EMPTY_SHA256,
    STREAMING_SIGNED,
    UNSIGNED_PAYLOAD,
    ChunkSigner,
    Credentials,
    canonical_query,
    canonical_uri,
    sign_request,
    verify_request,
)

AK = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
EXAMPLE_TIME = datetime.datetime(2013, 5, 24, tzinfo=datetime.timezone.utc)
HOST = "examplebucket.s3.amazonaws.com"
SCOPE = f"{AK}/20130524/us-east-1/s3/aws4_request"


def secret_for(access_key: str) -> str | None:
    return SECRET if access_key == AK else None


def authorization(signed_headers: str, signature: str) -> str:
    return f"AWS4-HMAC-SHA256 Credential={SCOPE}, SignedHeaders={signed_headers}, Signature={signature}"


# AWS's worked examples ("Signature Calculations for the Authorization Header: Transferring Payload in a Single
# Chunk" and "Authenticating Requests: Using Query Parameters"): (method, raw path, raw query, headers).
AWS_EXAMPLES = {
    "get-object-range": ("GET", "/test.txt", "", [
        ("Host", HOST), ("Range", "bytes=0-9"), ("x-amz-content-sha256", EMPTY_SHA256),
        ("x-amz-date", "20130524T000000Z"),
        ("Authorization", authorization("host;range;x-amz-content-sha256;x-amz-date",
                                        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"))]),
    "put-object": ("PUT", "/test$file.text", "", [
        ("Host", HOST), ("Date", "Fri, 24 May 2013 00:00:00 GMT"), ("x-amz-date", "20130524T000000Z"),
        ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ("x-amz-content-sha256", "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"),
        ("Authorization", authorization("date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
                                        "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"))]),
    "get-bucket-lifecycle": ("GET", "/", "lifecycle", [
        ("Host", HOST), ("x-amz-date", "20130524T000000Z"), ("x-amz-content-sha256", EMPTY_SHA256),
        ("Authorization", authorization("host;x-amz-content-sha256;x-amz-date",
                                        "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"))]),
    "list-objects": ("GET", "/", "max-keys=2&prefix=J", [
        ("Host", HOST), ("x-amz-date", "20130524T000000Z"), ("x-amz-content-sha256", EMPTY_SHA256),
        ("Authorization", authorization("host;x-amz-content-sha256;x-amz-date",
                                        "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"))]),
    "presigned-get": ("GET", "/test.txt",
                      "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1"
                      "%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
                      "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404",
                      [("Host", HOST)]),
}

# The streaming examples' requests (sigv4-streaming and sigv4-streaming-trailers pages).
STREAMING_EXAMPLE = ("PUT", "/examplebucket/chunkObject.txt", "", [
    ("Host", "s3.amazonaws.com"), ("x-amz-date", "20130524T000000Z"), ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
    ("x-amz-content-sha256", STREAMING_SIGNED), ("Content-Encoding", "aws-chunked"),
    ("x-amz-decoded-content-length", "66560"), ("Content-Length", "66824"),
    ("Authorization", authorization(
        "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;"
        "x-amz-storage-class", "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"))])


def verify(example, now=EXAMPLE_TIME, **kwargs):
    method, path, query, headers = example
    return verify_request(method, path, query, headers, secret_for, now, **kwargs)


def with_header(headers, name, value):
    """The headers with `name` replaced (or removed when value is None, or appended when absent)."""
    out = [(n, v) for n, v in headers if n.lower() != name.lower()]
    return out if value is None else out + [(name, value)]


def header(headers, name):
    return next(v for n, v in headers if n.lower() == name.lower())


# --- the published examples --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(AWS_EXAMPLES))
def test_aws_examples_verify(name):
    verified = verify(AWS_EXAMPLES[name])
    assert verified.access_key_id == AK
    assert verified.amz_date == "20130524T000000Z"
    assert verified.scope == "20130524/us-east-1/s3/aws4_request"
    assert verified.presigned == (name == "presigned-get")
    assert verified.key == sigv4.signing_key(SECRET, "20130524", "us-east-1", "s3")
    expected_hash = {"put-object": "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
                     "presigned-get": UNSIGNED_PAYLOAD}.get(name, EMPTY_SHA256)
    assert verified.payload_hash == expected_hash


def test_streaming_example_seed_signature():
    verified = verify(STREAMING_EXAMPLE)
    assert verified.payload_hash == STREAMING_SIGNED
    assert verified.signature == "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"


def _other_char(c: str) -> str:
    return "x" if c != "x" else "y"


def _mutations(example):
    """Every single-character change to the method, path, query and each header value (one at a time)."""
    method, path, query, headers = example
    for i, c in enumerate(method):
        yield f"method[{i}]", (method[:i] + _other_char(c).upper() + method[i + 1:], path, query, headers)
    for i, c in enumerate(path):
        yield f"path[{i}]", (method, path[:i] + _other_char(c) + path[i + 1:], query, headers)
    for i, c in enumerate(query):
        yield f"query[{i}]", (method, path, query[:i] + _other_char(c) + query[i + 1:], headers)
    for index, (name, value) in enumerate(headers):
        for i, c in enumerate(value):
            changed = list(headers)
            changed[index] = (name, value[:i] + _other_char(c) + value[i + 1:])
            yield f"{name}[{i}]", (method, path, query, changed)


@pytest.mark.parametrize("name", sorted(AWS_EXAMPLES) + ["streaming"])
def test_aws_examples_reject_any_changed_byte(name):
    example = STREAMING_EXAMPLE if name == "streaming" else AWS_EXAMPLES[name]
    count = 0
    for where, mutated in _mutations(example):
        with pytest.raises(errors.S3Error):
            verify(mutated)
            pytest.fail(f"accepted a request changed at {where}")
        count += 1
    assert count > 100


@pytest.mark.parametrize("name", ["get-object-range", "list-objects"])
def test_aws_examples_reject_a_changed_signature_as_mismatch(name):
    method, path, query, headers = AWS_EXAMPLES[name]
    auth = header(headers, "Authorization")
    for i in range(len(auth) - 64, len(auth)):
        tampered = with_header(headers, "Authorization", auth[:i] + _other_char(auth[i]) + auth[i + 1:])
        with pytest.raises(errors.SignatureDoesNotMatch):
            verify((method, path, query, tampered))


def test_added_unsigned_header_does_not_matter_but_signed_ones_do():
    method, path, query, headers = AWS_EXAMPLES["get-object-range"]
    verify((method, path, query, headers + [("User-Agent", "anything")]))
    with pytest.raises(errors.SignatureDoesNotMatch):  # a repeated signed header changes its canonical value
        verify((method, path, query, headers + [("Range", "bytes=0-99")]))


# --- canonicalisation --------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ("", "/"),
    ("/", "/"),
    ("/test$file.text", "/test%24file.text"),
    ("/test%24file.text", "/test%24file.text"),
    ("/b/a b", "/b/a%20b"),
    ("/b/a%20b", "/b/a%20b"),
    ("/b/a+b", "/b/a%2Bb"),            # '+' in a path is a plus, never a space
    ("/b/a%2Bb", "/b/a%2Bb"),
    ("/b/a%2Fb", "/b/a%2Fb"),          # an encoded slash stays part of the segment
    ("/b/a%2fb", "/b/a%2Fb"),
    ("/b//a/./../c", "/b//a/./../c"),  # S3: no normalisation
    ("/b/%7Euser/-_.", "/b/~user/-_."),
    ("/b/ключ", "/b/%D0%BA%D0%BB%D1%8E%D1%87"),
    ("/b/%D0%BA", "/b/%D0%BA"),
    ("/b/%ff%FE", "/b/%FF%FE"),        # not UTF-8: byte-exact
    ("/b/100%", "/b/100%25"),          # a stray '%' is a literal percent
    ("/b/*!'()", "/b/%2A%21%27%28%29"),
])
def test_canonical_uri(raw, expected):
    assert canonical_uri(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ("", ""),
    ("uploads", "uploads="),
    ("uploads=", "uploads="),
    ("prefix=a+b", "prefix=a%2Bb"),
    ("prefix=a%20b", "prefix=a%20b"),
    ("prefix=a b", "prefix=a%20b"),
    ("b=2&a=1&a=0", "a=0&a=1&b=2"),
    ("X-Amz-Signature=abc&x=1", "x=1"),
    ("a=%7e&c=%2f", "a=~&c=%2F"),
    ("a=b=c", "a=b%3Dc"),
    ("&&a=1&", "a=1"),
    ("delete&versionId=", "delete=&versionId="),
    ("list-type=2&prefix=%D1%8E/&max-keys=2", "list-type=2&max-keys=2&prefix=%D1%8E%2F"),
])
def test_canonical_query(raw, expected):
    assert canonical_query(raw) == expected


def test_canonical_query_custom_exclude():
    assert canonical_query("a=1&b=2", exclude=frozenset({"a"})) == "b=2"


# --- failures ----------------------------------------------------------------------------------------------

def get_example(**replace):
    method, path, query, headers = AWS_EXAMPLES["get-object-range"]
    for name, value in replace.items():
        headers = with_header(headers, name.replace("_", "-"), value)
    return method, path, query, headers


def test_no_auth_is_access_denied():
    with pytest.raises(errors.AccessDenied):
        verify(get_example(Authorization=None))


def test_unknown_access_key():
    auth = header(get_example()[3], "Authorization").replace(AK, "AKIAUNKNOWN")
    with pytest.raises(errors.InvalidAccessKeyId) as info:
        verify(get_example(Authorization=auth))
    assert info.value.fields == {"AWSAccessKeyId": "AKIAUNKNOWN"}


def test_empty_secret_counts_as_unknown():
    with pytest.raises(errors.InvalidAccessKeyId):
        verify_request(*get_example(), lambda ak: "", EXAMPLE_TIME)


@pytest.mark.parametrize("auth, error", [
    ("AWS AKIAIOSFODNN7EXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg=", errors.InvalidRequest),           # SigV2
    ("AWS4-ECDSA-P256-SHA256 Credential=AKIA/20130524/s3/aws4_request, SignedHeaders=host, "
     "Signature=3045", errors.InvalidRequest),                                                      # SigV4a
    ("Bearer abc", errors.AuthorizationHeaderMalformed),
    ("", errors.AuthorizationHeaderMalformed),
    ("AWS4-HMAC-SHA256", errors.AuthorizationHeaderMalformed),
    (f"AWS4-HMAC-SHA256 Credential={SCOPE}, SignedHeaders=host", errors.AuthorizationHeaderMalformed),
    (f"AWS4-HMAC-SHA256 Credential={SCOPE}, Credential={SCOPE}, SignedHeaders=host, Signature=00",
     errors.AuthorizationHeaderMalformed),
    (f"AWS4-HMAC-SHA256 Credential={SCOPE}, SignedHeaders=host, Signature=00, Extra=1",
     errors.AuthorizationHeaderMalformed),
    ("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3, SignedHeaders=host, Signature=0",
     errors.AuthorizationHeaderMalformed),
    ("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/ec2/aws4_request, SignedHeaders=host, "
     "Signature=0", errors.AuthorizationHeaderMalformed),
    ("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/2013-05-24/us-east-1/s3/aws4_request, "
     "SignedHeaders=host, Signature=0", errors.AuthorizationHeaderMalformed),
    # The credential date must be the request's date.
    ("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130525/us-east-1/s3/aws4_request, "
     "SignedHeaders=host;x-amz-date, Signature=0", errors.AuthorizationHeaderMalformed),
    # host must be signed
    (f"AWS4-HMAC-SHA256 Credential={SCOPE}, SignedHeaders=range;x-amz-date, Signature=0",
     errors.AuthorizationHeaderMalformed),
    (f"AWS4-HMAC-SHA256 Credential={SCOPE}, SignedHeaders=host;;range, Signature=0",
     errors.AuthorizationHeaderMalformed),
])
def test_malformed_or_unsupported_authorization(auth, error):
    with pytest.raises(error):
        verify(get_example(Authorization=auth))


def test_authorization_without_spaces_after_commas():
    auth = header(get_example()[3], "Authorization").replace(", ", ",")
    verify(get_example(Authorization=auth))


def test_any_region_is_accepted():
    headers = {"host": HOST}
    added = sign_request("GET", "/k", "", headers, EMPTY_SHA256, Credentials(AK, SECRET), "eu-west-3", EXAMPLE_TIME)
    verified = verify(("GET", "/k", "", [("host", HOST), *added.items()]))
    assert verified.scope == "20130524/eu-west-3/s3/aws4_request"


@pytest.mark.parametrize("offset, ok", [(0, True), (899, True), (900, True), (901, False), (-900, True),
                                        (-901, False), (86400, False)])
def test_clock_skew(offset, ok):
    now = EXAMPLE_TIME + datetime.timedelta(seconds=offset)
    if ok:
        verify(get_example(), now=now)
    else:
        with pytest.raises(errors.RequestTimeTooSkewed) as info:
            verify(get_example(), now=now)
        assert info.value.fields["MaxAllowedSkewMilliseconds"] == "900000"


def test_skew_is_configurable_and_naive_now_is_utc():
    verify(get_example(), now=EXAMPLE_TIME + datetime.timedelta(seconds=1000), max_skew_seconds=1800)
    verify(get_example(), now=datetime.datetime(2013, 5, 24, 0, 5))


@pytest.mark.parametrize("value", ["", "2013-05-24T00:00:00Z", "20130524T000000", "20131324T000000Z", "garbage"])
def test_invalid_x_amz_date(value):
    with pytest.raises(errors.S3Error):
        verify(get_example(x_amz_date=value))


def test_missing_date_is_access_denied():
    with pytest.raises(errors.AccessDenied):
        verify(get_example(x_amz_date=None))


@pytest.mark.parametrize("value", ["abc", EMPTY_SHA256[:-1], EMPTY_SHA256 + "0", "unsigned-payload", "z" * 64,
                                   "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"])
def test_invalid_payload_hash(value):
    with pytest.raises(errors.InvalidArgument):
        verify(get_example(x_amz_content_sha256=value))


def test_missing_payload_hash_header():
    with pytest.raises(errors.InvalidRequest):
        verify(get_example(x_amz_content_sha256=None))


def test_both_auth_mechanisms_at_once():
    method, path, _, headers = get_example()
    with pytest.raises(errors.InvalidArgument):
        verify((method, path, AWS_EXAMPLES["presigned-get"][2], headers))


def test_repr_hides_secrets():
    credentials = Credentials(AK, SECRET, "session-token-value")
    assert SECRET not in repr(credentials) and "session-token-value" not in repr(credentials)
    verified = verify(get_example())
    assert repr(verified.key) not in repr(verified) and "key=" not in repr(verified)
    assert repr(verified.key) not in repr(ChunkSigner(verified))


def _collect_failures():
    method, path, query, headers = get_example()
    cases = [get_example(Range="bytes=0-10"), get_example(Authorization=None),
             (method, "/other", query, headers), get_example(x_amz_content_sha256="bad")]
    cases += [mutated for _, mutated in _mutations(AWS_EXAMPLES["presigned-get"])]
    for case in cases:
        for now in (EXAMPLE_TIME, EXAMPLE_TIME + datetime.timedelta(days=3)):
            try:
                verify(case, now=now)
            except errors.S3Error as exc:
                yield exc


def test_error_messages_never_contain_secrets_or_signatures():
    seen = 0
    for exc in _collect_failures():
        text = " ".join([exc.message, *exc.fields.values()])
        assert SECRET not in text
        assert not re.search(r"[0-9a-f]{64}", text), text
        seen += 1
    assert seen > 50


# --- presigned URLs ----------------------------------------------------------------------------------------

def presign(expires="86400", date="20130524T000000Z", extra="", drop=()):
    """A presigned query (without signature) as botocore would build it, then signed with our own code."""
    params = {"X-Amz-Algorithm": "AWS4-HMAC-SHA256", "X-Amz-Credential": SCOPE, "X-Amz-Date": date,
              "X-Amz-Expires": expires, "X-Amz-SignedHeaders": "host"}
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items() if k not in drop) + extra
    canonical = "\n".join(["GET", "/test.txt", canonical_query(query), f"host:{HOST}\n", "host",
                           UNSIGNED_PAYLOAD if "X-Amz-Content-Sha256" not in query else EMPTY_SHA256])
    key = sigv4.signing_key(SECRET, date[:8], "us-east-1", "s3")
    signature = sigv4._sign(key, sigv4._string_to_sign(date, "20130524/us-east-1/s3/aws4_request", canonical))
    return query + f"&X-Amz-Signature={signature}"


def test_presigned_helper_matches_aws_example():
    assert presign() == AWS_EXAMPLES["presigned-get"][2]


@pytest.mark.parametrize("expires", ["0", "-1", "604801", "abc", "1.5", "", "٣", "9" * 5000])
def test_presigned_invalid_expires(expires):
    with pytest.raises(errors.AuthorizationQueryParametersError):
        verify(("GET", "/test.txt", presign(expires=expires), [("Host", HOST)]))


@pytest.mark.parametrize("expires", ["1", "604800"])
def test_presigned_expires_bounds_are_valid(expires):
    verify(("GET", "/test.txt", presign(expires=expires), [("Host", HOST)]))


def test_presigned_expiry():
    query = presign(expires="3600")
    verify(("GET", "/test.txt", query, [("Host", HOST)]), now=EXAMPLE_TIME + datetime.timedelta(seconds=3600))
    with pytest.raises(errors.AccessDenied, match="expired"):
        verify(("GET", "/test.txt", query, [("Host", HOST)]), now=EXAMPLE_TIME + datetime.timedelta(seconds=3601))


def test_presigned_from_the_future():
    query = presign(expires="3600")
    verify(("GET", "/test.txt", query, [("Host", HOST)]), now=EXAMPLE_TIME - datetime.timedelta(seconds=900))
    with pytest.raises(errors.RequestTimeTooSkewed):
        verify(("GET", "/test.txt", query, [("Host", HOST)]), now=EXAMPLE_TIME - datetime.timedelta(seconds=901))


@pytest.mark.parametrize("drop", ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
                                  "X-Amz-SignedHeaders"])
def test_presigned_missing_parameter(drop):
    with pytest.raises(errors.AuthorizationQueryParametersError):
        verify(("GET", "/test.txt", presign(drop=(drop,)), [("Host", HOST)]))


def test_presigned_bad_algorithm_and_date():
    query = AWS_EXAMPLES["presigned-get"][2]
    for bad in (query.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1"),
                query.replace("X-Amz-Date=20130524T000000Z", "X-Amz-Date=2013"),
                query.replace("X-Amz-Date=20130524T000000Z", "X-Amz-Date=20130525T000000Z"),
                query + "&X-Amz-Date=20130524T000000Z"):
        with pytest.raises(errors.AuthorizationQueryParametersError):
            verify(("GET", "/test.txt", bad, [("Host", HOST)]))


def test_presigned_with_payload_hash_in_query():
    verified = verify(("GET", "/test.txt", presign(extra=f"&X-Amz-Content-Sha256={EMPTY_SHA256}"), [("Host", HOST)]))
    assert verified.payload_hash == EMPTY_SHA256


def test_sigv2_presigned_url_is_refused_clearly():
    with pytest.raises(errors.InvalidRequest):
        verify(("GET", "/test.txt", "AWSAccessKeyId=AK&Expires=1369353600&Signature=abc%3D", [("Host", HOST)]))


# --- sign_request / verify_request round trips -------------------------------------------------------------

def encode_key(key: str) -> str:
    return quote(key, safe="/~")


def round_trip(key: str, query: str = "", extra_headers: dict[str, str] | None = None,
               credentials: Credentials | None = None, payload_hash: str = EMPTY_SHA256, method: str = "PUT"):
    credentials = credentials or Credentials(AK, SECRET)
    raw_path = "/bucket/" + encode_key(key)
    headers = {"host": "127.0.0.1:9000", **(extra_headers or {})}
    added = sign_request(method, raw_path, query, headers, payload_hash, credentials, "us-east-1", EXAMPLE_TIME)
    received = list(headers.items()) + list(added.items())
    verified = verify_request(method, raw_path, query, received,
                              lambda ak: credentials.secret_access_key if ak == credentials.access_key_id else None,
                              EXAMPLE_TIME)
    return added, verified, (method, raw_path, query, received)


@pytest.mark.parametrize("key", ["plain.txt", "with space.txt", "a+b=c&d", "ключ/файл", "a%2Fb", "100%",
                                 "dir//x/./../y", "~tilde*star'quote(paren)", "emoji-🎉", "tab\tand\nnewline"])
def test_round_trip_keys(key):
    added, verified, _ = round_trip(key, query="x-id=PutObject&tagging")
    assert set(added) == {"x-amz-date", "x-amz-content-sha256", "Authorization"}
    assert added["x-amz-date"] == "20130524T000000Z"
    assert verified.payload_hash == EMPTY_SHA256
    assert verified.signed_headers == ("host", "x-amz-content-sha256", "x-amz-date")


def test_round_trip_rejects_other_path():
    _, _, (method, raw_path, query, received) = round_trip("a b")
    for other in ("/bucket/a+b", "/bucket/a%2Bb", "/bucket/a/b", "/bucket/ab"):
        with pytest.raises(errors.SignatureDoesNotMatch):
            verify_request(method, other, query, received, secret_for, EXAMPLE_TIME)


def test_round_trip_session_token_is_signed():
    credentials = Credentials("ASIATEMP", "temp secret", "FwoGZXIvYXdzEJr//token+/=")
    added, verified, (method, raw_path, query, received) = round_trip("k", credentials=credentials)
    assert added["x-amz-security-token"] == credentials.session_token
    assert "x-amz-security-token" in verified.signed_headers
    tampered = with_header(received, "x-amz-security-token", "other")
    with pytest.raises(errors.SignatureDoesNotMatch):
        verify_request(method, raw_path, query, tampered, lambda ak: "temp secret", EXAMPLE_TIME)


def test_sign_request_ignores_and_replaces_its_own_headers():
    headers = {"host": "h", "X-Amz-Date": "19990101T000000Z", "authorization": "old"}
    added = sign_request("GET", "/", "", headers, EMPTY_SHA256, Credentials(AK, SECRET), "us-east-1", EXAMPLE_TIME)
    assert "SignedHeaders=host;x-amz-content-sha256;x-amz-date," in added["Authorization"]


def test_sign_request_requires_host_and_valid_payload_hash():
    with pytest.raises(ValueError):
        sign_request("GET", "/", "", {}, EMPTY_SHA256, Credentials(AK, SECRET), "us-east-1", EXAMPLE_TIME)
    with pytest.raises(ValueError):
        sign_request("GET", "/", "", {"host": "h"}, "nope", Credentials(AK, SECRET), "us-east-1", EXAMPLE_TIME)


def test_header_whitespace_is_canonicalised():
    _, _, (method, raw_path, query, received) = round_trip("k", extra_headers={"x-amz-meta-note": "a   b\t c"})
    for variant in ("a b c", "  a b c  ", "a \t b   c"):
        verify_request(method, raw_path, query, with_header(received, "x-amz-meta-note", variant), secret_for,
                       EXAMPLE_TIME)
    with pytest.raises(errors.SignatureDoesNotMatch):
        verify_request(method, raw_path, query, with_header(received, "x-amz-meta-note", "ab c"), secret_for,
                       EXAMPLE_TIME)


def test_header_names_any_case_and_repeated_values_joined():
    _, _, (method, raw_path, query, received) = round_trip("k", extra_headers={"x-amz-meta-list": "1,2"})
    split = [(n.upper(), v) for n, v in with_header(received, "x-amz-meta-list", None)]
    split += [("X-Amz-Meta-List", "1"), ("x-amz-meta-LIST", "2")]
    verify_request(method, raw_path, query, split, secret_for, EXAMPLE_TIME)


def test_signed_expect_header_removed_by_the_http_stack():
    _, _, (method, raw_path, query, received) = round_trip("k", extra_headers={"expect": "100-continue"})
    verify_request(method, raw_path, query, with_header(received, "expect", None), secret_for, EXAMPLE_TIME)


def test_signed_but_absent_header_counts_as_empty():
    _, _, (method, raw_path, query, received) = round_trip("k", extra_headers={"content-length": ""})
    verify_request(method, raw_path, query, with_header(received, "content-length", None), secret_for, EXAMPLE_TIME)
    _, _, (method, raw_path, query, received) = round_trip("k", extra_headers={"content-length": "5"})
    with pytest.raises(errors.SignatureDoesNotMatch):
        verify_request(method, raw_path, query, with_header(received, "content-length", None), secret_for,
                       EXAMPLE_TIME)


_key_text = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40)
_query = st.lists(st.tuples(_key_text, st.text(max_size=10)), max_size=4)


@settings(max_examples=200, deadline=None)
@given(key=_key_text, params=_query, payload=st.sampled_from([EMPTY_SHA256, UNSIGNED_PAYLOAD, STREAMING_SIGNED]))
def test_round_trip_any_key_and_query(key, params, payload):
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params)
    _, verified, (method, raw_path, q, received) = round_trip(key, query=query, payload_hash=payload)
    assert verified.payload_hash == payload
    # Clients that leave more characters unescaped produce the same canonical form, so the same signature.
    loose = "/bucket/" + quote(key, safe="/~!$'()*+,;=:@")
    verify_request(method, loose, q, received, secret_for, EXAMPLE_TIME)


# --- cross-checks with botocore ----------------------------------------------------------------------------

botocore_auth = pytest.importorskip("botocore.auth")
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials as BotoCredentials  # noqa: E402


@pytest.fixture
def frozen_botocore(monkeypatch):
    frozen = EXAMPLE_TIME.replace(tzinfo=None)  # botocore works in naive UTC
    monkeypatch.setattr(botocore_auth, "get_current_datetime", lambda remove_tzinfo=True: frozen)


BOTO_CASES = [
    ("GET", "https://s3.amazonaws.com/bucket/key%20with%20space", {}, b""),
    ("PUT", "http://127.0.0.1:9000/bucket/a%2Bb/%D0%BA%D0%BB%D1%8E%D1%87?partNumber=1&uploadId=abc%2Fdef",
     {"Content-Type": "text/plain", "x-amz-meta-a": "  spaced   value "}, b"hello world"),
    ("POST", "https://bucket.s3.eu-central-1.amazonaws.com/?delete=", {"Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg=="},
     b"<Delete/>"),
    ("GET", "https://s3.amazonaws.com/bucket?list-type=2&prefix=a%20b%2Bc&delimiter=%2F", {}, b""),
]


@pytest.mark.parametrize("method, url, headers, body", BOTO_CASES)
@pytest.mark.parametrize("token", [None, "session/token+="])
def test_botocore_header_signatures_verify_and_match_ours(frozen_botocore, method, url, headers, body, token):
    request = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
    region = "eu-central-1"
    botocore_auth.S3SigV4Auth(BotoCredentials(AK, SECRET, token), "s3", region).add_auth(request)
    parts = urlsplit(url)
    received = [("Host", parts.netloc), *request.headers.items()]
    verified = verify_request(method, parts.path, parts.query, received, secret_for, EXAMPLE_TIME)
    assert verified.payload_hash == request.headers["X-Amz-Content-SHA256"]

    # Our signer, given the same headers, produces botocore's Authorization.
    ours = {n: v for n, v in received if n.lower() not in ("authorization", "x-amz-date", "x-amz-content-sha256",
                                                           "x-amz-security-token")}
    added = sign_request(method, parts.path, parts.query, ours, request.headers["X-Amz-Content-SHA256"],
                         Credentials(AK, SECRET, token), region, EXAMPLE_TIME)
    assert added["Authorization"] == request.headers["Authorization"]


@pytest.mark.parametrize("url", ["https://examplebucket.s3.amazonaws.com/test.txt",
                                 "http://127.0.0.1:9000/bucket/k%20%2B%D1%8E?versionId=v1%2B",
                                 "https://s3.amazonaws.com/bucket/dir//x"])
def test_botocore_presigned_urls_verify(frozen_botocore, url):
    request = AWSRequest(method="GET", url=url)
    botocore_auth.S3SigV4QueryAuth(BotoCredentials(AK, SECRET), "s3", "us-east-1", expires=3600).add_auth(request)
    parts = urlsplit(request.url)
    verified = verify_request("GET", parts.path, parts.query, [("host", parts.netloc)], secret_for, EXAMPLE_TIME)
    assert verified.presigned and verified.payload_hash == UNSIGNED_PAYLOAD
    with pytest.raises(errors.AccessDenied):
        verify_request("GET", parts.path, parts.query, [("host", parts.netloc)], secret_for,
                       EXAMPLE_TIME + datetime.timedelta(seconds=3601))


def test_botocore_date_header_instead_of_x_amz_date(frozen_botocore):
    request = AWSRequest(method="GET", url="https://s3.amazonaws.com/b/k", headers={"Date": "whatever"})
    botocore_auth.S3SigV4Auth(BotoCredentials(AK, SECRET), "s3", "us-east-1").add_auth(request)
    assert "X-Amz-Date" not in request.headers
    received = [("host", "s3.amazonaws.com"), *request.headers.items()]
    verified = verify_request("GET", "/b/k", "", received, secret_for, EXAMPLE_TIME)
    assert verified.amz_date == "20130524T000000Z"


def test_boto3_client_requests_verify():
    """Real boto3 clients (flexible checksums, presigning): capture the prepared request instead of sending it."""
    boto3 = pytest.importorskip("boto3")
    from botocore.config import Config

    captured = []

    class Captured(Exception):
        pass

    def capture(request, **_):
        captured.append(request)
        raise Captured

    now = datetime.datetime.now(datetime.timezone.utc)
    for endpoint in ("http://127.0.0.1:9", "https://127.0.0.1:9"):
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=AK,
                              aws_secret_access_key=SECRET, config=Config(retries={"max_attempts": 1},
                                                                          s3={"addressing_style": "path"}))
        client.meta.events.register("before-send.s3.*", capture)
        for call in (lambda: client.put_object(Bucket="b", Key="dir/a b+c ключ", Body=b"x" * 1000),
                     lambda: client.get_object(Bucket="b", Key="%2F/..", Range="bytes=0-1"),
                     lambda: client.list_objects_v2(Bucket="b", Prefix="a b+", Delimiter="/"),
                     lambda: client.delete_objects(Bucket="b", Delete={"Objects": [{"Key": "k"}]})):
            with pytest.raises(Captured):
                call()
            request = captured.pop()
            parts = urlsplit(request.url)
            received = [(n, v.decode() if isinstance(v, bytes) else v) for n, v in request.headers.items()]
            assert ("host", parts.netloc) in received
            verify_request(request.method, parts.path, parts.query, received, secret_for, now)
        # boto3's presigned URLs are SigV2 unless the client is configured for s3v4: refused, with a clear error.
        url = client.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"}, ExpiresIn=60)
        parts = urlsplit(url)
        with pytest.raises(errors.InvalidRequest, match="AWS4-HMAC-SHA256"):
            verify_request("GET", parts.path, parts.query, [("host", parts.netloc)], secret_for, now)
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=AK,
                              aws_secret_access_key=SECRET, config=Config(signature_version="s3v4"))
        url = client.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "ü n+i/c%de"}, ExpiresIn=60)
        parts = urlsplit(url)
        assert verify_request("GET", parts.path, parts.query, [("host", parts.netloc)], secret_for, now).presigned


# --- act only on what was signed (security review findings 1, 7, 6) ------------------------------------------

@pytest.mark.parametrize("name", ["x-amz-copy-source", "X-Amz-Meta-Note", "x-amz-tagging",
                                  "x-amz-website-redirect-location", "x-amz-acl"])
def test_an_unsigned_amz_header_is_access_denied(name):
    method, path, query, headers = AWS_EXAMPLES["get-object-range"]
    with pytest.raises(errors.AccessDenied, match="not signed") as info:
        verify((method, path, query, headers + [(name, "other-bucket/secret")]))
    assert info.value.fields == {"HeadersNotSigned": name.lower()}


def test_an_unsigned_amz_header_on_a_presigned_url_is_access_denied():
    method, path, query, headers = AWS_EXAMPLES["presigned-get"]
    with pytest.raises(errors.AccessDenied) as info:
        verify((method, path, query, headers + [("x-amz-meta-b", "1"), ("x-amz-copy-source", "b/k")]))
    assert info.value.fields == {"HeadersNotSigned": "x-amz-copy-source, x-amz-meta-b"}
    # What S3 lets a presigned URL carry unsigned still works; x-amz-* parameters of the query are signed.
    verify((method, path, query, headers + [("Content-Type", "text/plain"), ("Content-MD5", "x")]))


@pytest.mark.parametrize("space", ["\u00a0", "\u2028", "\u3000", "\u0085", "\x1f", "\x0b", "\x0c"])
def test_unicode_whitespace_in_a_signed_value_breaks_the_signature(space):
    _, _, (method, raw_path, query, received) = round_trip("k", extra_headers={"x-amz-meta-note": "approved"})
    for variant in (f"approved{space}", f"{space}approved", f"appr{space}oved"):
        with pytest.raises(errors.SignatureDoesNotMatch):
            verify_request(method, raw_path, query, with_header(received, "x-amz-meta-note", variant), secret_for,
                           EXAMPLE_TIME)
    with pytest.raises(errors.SignatureDoesNotMatch):
        verify_request(method, raw_path, query, with_header(received, "host", f"{space}127.0.0.1:9000"), secret_for,
                       EXAMPLE_TIME)


@pytest.mark.parametrize("space", ["\u00a0", "\u2028"])
def test_unicode_whitespace_in_authorization_fields_is_not_trimmed(space):
    method, path, query, headers = AWS_EXAMPLES["get-object-range"]
    auth = header(headers, "Authorization")
    with pytest.raises(errors.SignatureDoesNotMatch):
        verify((method, path, query, with_header(headers, "Authorization", auth + space)))
    with pytest.raises(errors.AuthorizationHeaderMalformed):
        verify((method, path, query, with_header(headers, "Authorization",
                                                 auth.replace("x-amz-date,", f"x-amz-date{space},"))))
    with pytest.raises(errors.S3Error):
        verify((method, path, query, with_header(headers, "x-amz-date", f"20130524T000000Z{space}")))


@pytest.mark.parametrize("signed", ["host;Range", "host;ra nge", "host;rangé", "host;range;", "host,range"])
def test_signed_header_names_must_be_lowercase_tokens(signed):
    with pytest.raises(errors.AuthorizationHeaderMalformed):
        verify(get_example(Authorization=authorization(signed, "0" * 64)))


def test_trailer_canonicalisation_trims_ascii_spaces_only():
    assert sigv4.canonical_trailer([(" X-Amz-Checksum-CRC32 ", " \tAAAA== ")]) == b"x-amz-checksum-crc32:AAAA==\n"
    assert sigv4.canonical_trailer([("x-amz-checksum-crc32", "AAAA==\u00a0")]) == \
        "x-amz-checksum-crc32:AAAA==\u00a0\n".encode()


@pytest.mark.parametrize("date", ["２０１３０５２４T000000Z", "2013052٤T000000Z"])
def test_non_ascii_digits_in_dates_are_refused(date):
    with pytest.raises(errors.AuthorizationQueryParametersError):
        verify(("GET", "/test.txt", presign().replace("20130524T000000Z", quote(date)), [("Host", HOST)]))
    scope = SCOPE.replace("20130524", date[:8])
    with pytest.raises(errors.AuthorizationHeaderMalformed):
        verify(get_example(Authorization=authorization("host;range;x-amz-content-sha256;x-amz-date", "0" * 64)
                           .replace(SCOPE, scope)))
    with pytest.raises(errors.S3Error):
        verify(get_example(x_amz_date=date))


@pytest.mark.parametrize("date", ["Mon, 01 Jan 0001 00:00:00 +0100", "Fri, 31 Dec 9999 23:59:59 -2359",
                                  "Fri, 31 Dec 9999 23:59:59 -9999", "Mon, 99 Jan 2013 00:00:00 GMT"])
def test_date_headers_out_of_range_are_a_4xx(date):
    method, path, query, headers = get_example(x_amz_date=None)
    with pytest.raises(errors.S3Error) as info:
        verify((method, path, query, with_header(headers, "Date", date)))
    assert info.value.status in (400, 403)
