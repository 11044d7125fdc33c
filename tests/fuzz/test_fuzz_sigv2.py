"""SigV2 presigned URLs (gateway.s3.sigv2): URLs botocore presigns verify, x-amz-* query parameters included; any
presigned-looking request gives a VerifiedRequest or an S3Error; an added or changed x-amz-* header or query
parameter, or unicode whitespace around a signed value, breaks the signature."""
from __future__ import annotations

import datetime
from unittest import mock
from urllib.parse import quote, urlsplit

from botocore.auth import HmacV1QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given
from hypothesis import strategies as st

from gateway import errors
from gateway.s3.addressing import parse_query
from gateway.s3.sigv2 import is_presigned_v2, verify_presigned_v2
from gateway.s3.sigv4 import VerifiedRequest

AK = "AKIDFUZZ"
SECRET = "fuzz/secret+key="
NOW = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.timezone.utc)

_wire_text = st.binary(max_size=30).map(lambda raw: raw.decode("utf-8", "surrogateescape"))
_any_text = st.one_of(st.text(max_size=30), _wire_text)
_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=10)
# Values botocore and S3 agree on: printable ASCII (botocore trims with str.strip(), which differs from S3's ASCII
# trimming only outside ASCII).
_ascii_value = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20)
_meta = st.dictionaries(_token.map(lambda n: "x-amz-meta-" + n), _ascii_value, max_size=3)
_not_sigv2_space = st.sampled_from(["\u00a0", "\u2028", "\u3000", "\u0085", "\x0b", "\x0c", "\x1f"])


def _presign(method: str, key: str, headers: dict[str, str]) -> tuple[str, str]:
    request = AWSRequest(method, f"http://127.0.0.1:9000/bucket/{quote(key)}", headers=headers)
    with mock.patch("time.time", return_value=NOW.timestamp()):
        HmacV1QueryAuth(Credentials(AK, SECRET), expires=300).add_auth(request)
    parts = urlsplit(request.url)
    return parts.path, parts.query


def _verify(method: str, path: str, query: str, headers: list[tuple[str, str]] = ()):
    return verify_presigned_v2(method, path, parse_query(query), list(headers), None,
                               {AK: SECRET}.get, NOW)


@given(st.sampled_from(["GET", "PUT", "DELETE"]), _token, _meta)
def test_botocore_presigned_urls_verify(method, key, meta) -> None:
    path, query = _presign(method, key, meta)
    assert isinstance(_verify(method, path, query), VerifiedRequest)             # the metadata only in the URL
    _verify(method, path, query, list(meta.items()))                             # and also sent as headers


@given(st.sampled_from(["GET", "PUT"]), _any_text,
       st.lists(st.tuples(st.one_of(st.sampled_from(["AWSAccessKeyId", "Expires", "Signature", "x-amz-meta-a",
                                                     "X-Amz-Copy-Source", "acl", "uploadId"]), _any_text),
                          st.one_of(_any_text, st.just(AK), st.just("9" * 5000), st.just("²"))), max_size=6),
       st.lists(st.tuples(st.sampled_from(["x-amz-acl", "Content-Type", "content-md5", "X-Amz-Meta-B", "Host"]),
                          _any_text), max_size=4),
       st.one_of(st.none(), _any_text))
def test_any_presigned_request_is_verified_or_an_s3_error(method, path, params, headers, bucket) -> None:
    params = [("AWSAccessKeyId", AK), ("Expires", "1800000000"), ("Signature", "x")] + params
    if not is_presigned_v2(dict(params)):
        return
    try:
        verify_presigned_v2(method, path, params, headers, bucket, {AK: SECRET}.get, NOW)
    except errors.S3Error:
        pass


@given(_token, _meta, _token, _any_text, st.booleans())
def test_an_added_amz_header_or_parameter_breaks_the_signature(key, meta, name, value, as_header) -> None:
    path, query = _presign("PUT", key, meta)
    added = "x-amz-" + name
    if added in meta:
        return
    try:
        if as_header:
            _verify("PUT", path, query, [(added, value)])
        else:
            _verify("PUT", path, query + f"&{added}={quote(value, safe='', errors='surrogateescape')}")
    except (errors.SignatureDoesNotMatch, errors.InvalidURI):
        pass  # InvalidURI: a parameter that does not decode as UTF-8 is refused before the signature is checked
    else:
        raise AssertionError(f"an unsigned {added} was accepted")


@given(_token, st.dictionaries(_token.map(lambda n: "x-amz-meta-" + n), _ascii_value, min_size=1, max_size=3),
       st.data())
def test_any_change_to_a_signed_value_breaks_the_signature(key, meta, data) -> None:
    path, query = _presign("PUT", key, meta)
    name = data.draw(st.sampled_from(sorted(meta)))
    extra = data.draw(st.one_of(_not_sigv2_space, st.characters(exclude_categories=("Cs",),
                                                                exclude_characters=" \t,")))
    where = data.draw(st.sampled_from([0, len(meta[name])]))
    changed = meta[name][:where] + extra + meta[name][where:]
    as_header = data.draw(st.booleans())
    try:
        if as_header:  # the URL without the parameter, the changed value as a header
            stripped = "&".join(p for p in query.split("&") if not p.startswith(name + "="))
            _verify("PUT", path, stripped, [(name, changed)])
        else:
            prefix = name + "="
            _verify("PUT", path, "&".join(prefix + quote(changed, safe="") if p.startswith(prefix) else p
                                          for p in query.split("&")))
    except errors.SignatureDoesNotMatch:
        pass
    else:
        raise AssertionError(f"{name}: {meta[name]!r} changed to {changed!r} still verifies")
