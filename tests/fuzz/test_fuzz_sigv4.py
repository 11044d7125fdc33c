"""SigV4 (gateway.s3.sigv4): signed requests verify; any request gives a VerifiedRequest or an S3Error; an
unsigned x-amz-* header is AccessDenied; any change to a signed header value — unicode whitespace included —
breaks the signature."""
from __future__ import annotations

import datetime
from urllib.parse import quote, urlsplit

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from hypothesis import given
from hypothesis import strategies as st

from gateway import errors
from gateway.s3.sigv4 import (EMPTY_SHA256, PAYLOAD_LITERALS, Credentials, VerifiedRequest, canonical_query,
                              canonical_trailer, canonical_uri, sign_request, verify_request)

AK = "AKIDFUZZ"
SECRET = "fuzz/secret+key="
NOW = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.timezone.utc)
HOST = "127.0.0.1:9000"


def secret_for(access_key: str) -> str | None:
    return SECRET if access_key == AK else None


# What the HTTP stack hands over: any bytes, decoded as UTF-8 with undecodable bytes kept as surrogates.
_wire_text = st.binary(max_size=40).map(lambda raw: raw.decode("utf-8", "surrogateescape"))
_any_text = st.one_of(st.text(max_size=40), _wire_text)
_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=12)
_header_value = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
_ascii_value = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.just("\t"), max_size=30)
# The characters Python's str.split()/strip() treat as space that SigV4 does not (plus a few that look alike).
_not_sigv4_space = st.sampled_from(["\u00a0", "\u2028", "\u2029", "\u3000", "\u0085", "\u1680", "\u2000", "\u200b",
                                    "\ufeff", "\x0b", "\x0c", "\x1c", "\x1f", "\r", "\n"])
_key = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=30)
# Query parameters of a header-signed request (X-Amz-* names would make it a presigned one).
_params = st.lists(st.tuples(_key.filter(lambda k: not k.lower().startswith("x-amz-")),
                             st.text(st.characters(exclude_categories=("Cs",)), max_size=10)), max_size=4)
_meta = st.dictionaries(_token.map(lambda n: "x-amz-meta-" + n), _header_value, max_size=4)


def _signed(key: str, params, headers: dict[str, str], payload_hash: str = EMPTY_SHA256):
    raw_path = "/bucket/" + quote(key, safe="/")
    raw_query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params)
    headers = {"host": HOST, **headers}
    added = sign_request("PUT", raw_path, raw_query, headers, payload_hash, Credentials(AK, SECRET), "us-east-1", NOW)
    return raw_path, raw_query, list(headers.items()) + list(added.items())


def _verify(raw_path: str, raw_query: str, headers, method: str = "PUT"):
    return verify_request(method, raw_path, raw_query, headers, secret_for, NOW)


@given(_key, _params, _meta, st.sampled_from(sorted(PAYLOAD_LITERALS | {EMPTY_SHA256})))
def test_requests_we_sign_verify(key, params, meta, payload_hash) -> None:
    raw_path, raw_query, headers = _signed(key, params, meta, payload_hash)
    verified = _verify(raw_path, raw_query, headers)
    assert verified.payload_hash == payload_hash and set(meta) <= set(verified.signed_headers)


@given(_token, st.dictionaries(_token.map(lambda n: "x-amz-meta-" + n), _ascii_value, max_size=4))
def test_requests_botocore_signs_verify(key, meta) -> None:
    url = f"http://{HOST}/bucket/{quote(key)}"
    request = AWSRequest("PUT", url, data=b"body", headers=meta)
    S3SigV4Auth(BotoCredentials(AK, SECRET), "s3", "us-east-1").add_auth(request)  # signs at the clock's time
    parts = urlsplit(url)
    verify_request("PUT", parts.path, parts.query, [("Host", parts.netloc), *request.headers.items()], secret_for,
                   datetime.datetime.now(datetime.timezone.utc))


@given(st.sampled_from(["GET", "PUT", "POST", "HEAD", "DELETE", "get", ""]), _any_text, _any_text,
       st.lists(st.tuples(st.one_of(st.sampled_from(["Authorization", "x-amz-date", "x-amz-content-sha256", "Date",
                                                     "Host", "x-amz-meta-a", "Expect"]), _any_text), _any_text),
                max_size=8))
def test_any_request_is_verified_or_an_s3_error(method, raw_path, raw_query, headers) -> None:
    try:
        assert isinstance(verify_request(method, raw_path, raw_query, headers, secret_for, NOW), VerifiedRequest)
    except errors.S3Error:
        pass


_auth_piece = st.sampled_from(["AWS4-HMAC-SHA256", " ", ",", "=", "Credential", "SignedHeaders", "Signature",
                               f"{AK}/20260301/us-east-1/s3/aws4_request", "host", ";", "x-amz-date", "/", "0" * 64,
                               "\u00a0", "\u2028", "\t", "２", "aws4_request"])


@given(st.lists(_auth_piece, max_size=16).map("".join),
       st.sampled_from(["20260301T120000Z", "２０２６0301T120000Z", "20260301T120000Z\u00a0", "", "2026"]),
       st.sampled_from([EMPTY_SHA256, "UNSIGNED-PAYLOAD", "UNSIGNED-PAYLOAD\u2028", "x"]))
def test_authorization_like_headers_are_verified_or_an_s3_error(authorization, amz_date, payload) -> None:
    headers = [("Host", HOST), ("Authorization", authorization), ("x-amz-date", amz_date),
               ("x-amz-content-sha256", payload)]
    try:
        _verify("/bucket/k", "", headers)
    except errors.S3Error:
        pass


_presign_piece = st.sampled_from(["X-Amz-Algorithm=AWS4-HMAC-SHA256", "X-Amz-Credential=" + quote(
    f"{AK}/20260301/us-east-1/s3/aws4_request", safe=""), "X-Amz-Date=20260301T120000Z", "X-Amz-Expires=",
    "X-Amz-SignedHeaders=host", "X-Amz-Signature=00", "&", "%C2%B2", "9" * 30, "60", "%EF%BC%92", "x-amz-meta-a=1",
    "X-Amz-Content-Sha256=", "%FF", "+", "-1"])


@given(st.lists(_presign_piece, max_size=14).map("".join))
def test_presign_like_queries_are_verified_or_an_s3_error(raw_query) -> None:
    try:
        _verify("/bucket/k", raw_query, [("Host", HOST)], method="GET")
    except errors.S3Error:
        pass


@given(_key, _params, _meta, _token, _header_value)
def test_an_unsigned_amz_header_is_access_denied(key, params, meta, name, value) -> None:
    raw_path, raw_query, headers = _signed(key, params, meta)
    added = "x-amz-" + name
    if added in meta or added in ("x-amz-date", "x-amz-content-sha256"):
        return
    try:
        _verify(raw_path, raw_query, headers + [(added.upper() if len(name) % 2 else added, value)])
    except errors.AccessDenied as exc:
        assert exc.fields["HeadersNotSigned"] == added
    else:
        raise AssertionError("an unsigned x-amz-* header was accepted")


@given(_key, st.dictionaries(_token.map(lambda n: "x-amz-meta-" + n), _header_value, min_size=1, max_size=3),
       st.data())
def test_any_change_to_a_signed_value_breaks_the_signature(key, meta, data) -> None:
    raw_path, raw_query, headers = _signed(key, [], meta)
    name = data.draw(st.sampled_from(sorted(meta) + ["host"]))
    value = dict(headers)[name]
    extra = data.draw(st.one_of(_not_sigv4_space, st.characters(exclude_categories=("Cs",), exclude_characters=" \t")))
    where = data.draw(st.integers(min_value=0, max_value=len(value)))
    changed = value[:where] + extra + value[where:]
    tampered = [(n, changed if n == name else v) for n, v in headers]
    try:
        _verify(raw_path, raw_query, tampered)
    except errors.SignatureDoesNotMatch:
        pass
    else:
        raise AssertionError(f"{name}: {value!r} changed to {changed!r} still verifies")


@given(_any_text, _any_text)
def test_canonicalisers_take_any_text(raw_path, raw_query) -> None:
    assert canonical_uri(raw_path).startswith("/") or raw_path and not raw_path.startswith("/")
    canonical_query(raw_query)
    canonical_trailer([(raw_path, raw_query)])


@given(_any_text, _any_text, st.one_of(st.just("x-amz-content-sha256;x-amz-date"), _any_text), _any_text,
       st.booleans())
def test_well_formed_authorization_with_any_fields_is_verified_or_an_s3_error(access_key, region, signed,
                                                                             signature, known) -> None:
    credential = f"{AK if known else access_key}/20260301/{region}/s3/aws4_request"
    headers = [("Host", HOST), ("x-amz-date", "20260301T120000Z"), ("x-amz-content-sha256", EMPTY_SHA256),
               ("Authorization", f"AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders=host;{signed}, "
                                 f"Signature={signature}")]
    query = (f"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={quote(credential, safe='', errors='surrogateescape')}"
             f"&X-Amz-Date=20260301T120000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host%3B{quote(signed, safe='', errors='surrogateescape')}"
             f"&X-Amz-Signature={quote(signature, safe='', errors='surrogateescape')}")
    for raw_query, sent in (("", headers), (query, headers[:1])):
        try:
            _verify("/bucket/k", raw_query, sent, method="GET")
        except errors.S3Error:
            pass
