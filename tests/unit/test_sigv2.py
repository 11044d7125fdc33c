"""SigV2 presigned URLs, checked against botocore's own SigV2 query signer (what boto3's default presign uses)."""
from __future__ import annotations

import datetime
from urllib.parse import quote, urlsplit

import pytest
from botocore.auth import HmacV1QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from gateway import errors
from gateway.s3.addressing import parse_query
from gateway.s3.sigv2 import is_presigned_v2, verify_presigned_v2

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
NOW = datetime.datetime(2026, 11, 27, 12, 0, tzinfo=datetime.timezone.utc)


def _presign(method: str, url: str, headers: dict[str, str] | None = None, expires: int = 3600) -> tuple[str, str]:
    request = AWSRequest(method, url, headers=headers or {})
    signer = HmacV1QueryAuth(Credentials("AKIDEXAMPLE", SECRET), expires=expires)
    signer._get_date = lambda: str(int(NOW.timestamp()) + expires)  # type: ignore[method-assign]
    signer.add_auth(request)
    parts = urlsplit(request.url)
    return parts.path, parts.query


def _verify(method, path, query, headers=None, bucket=None, now=NOW):
    return verify_presigned_v2(method, path, parse_query(query), list((headers or {}).items()), bucket,
                               {"AKIDEXAMPLE": SECRET}.get, now)


@pytest.mark.parametrize("method,url", [
    ("GET", "http://h/bucket/key"), ("PUT", "http://h/bucket/a%20b/c%2Bd"),
    ("GET", "http://h/bucket/key?versionId=3&response-content-type=text%2Fplain"),
    ("DELETE", "http://h/bucket/key"), ("GET", "http://h/bucket/k?tagging")])
def test_botocore_presigned_urls_verify(method, url):
    path, query = _presign(method, url)
    assert is_presigned_v2(dict(parse_query(query)))
    verified = _verify(method, path, query)
    assert verified.access_key_id == "AKIDEXAMPLE" and verified.presigned


def test_virtual_hosted_signs_the_bucket():
    request = AWSRequest("GET", "http://bucket.localhost/key")
    request.auth_path = "/bucket/key"
    signer = HmacV1QueryAuth(Credentials("AKIDEXAMPLE", SECRET), expires=60)
    signer._get_date = lambda: str(int(NOW.timestamp()) + 60)  # type: ignore[method-assign]
    signer.add_auth(request)
    query = urlsplit(request.url).query
    _verify("GET", "/key", query, bucket="bucket")
    with pytest.raises(errors.SignatureDoesNotMatch):
        _verify("GET", "/key", query, bucket=None)


def test_tampering_expiry_and_unknown_keys():
    path, query = _presign("GET", "http://h/bucket/key")
    with pytest.raises(errors.SignatureDoesNotMatch):
        _verify("GET", path + "x", query)
    with pytest.raises(errors.SignatureDoesNotMatch):
        _verify("PUT", path, query)
    with pytest.raises(errors.AccessDenied):
        _verify("GET", path, query, now=NOW + datetime.timedelta(hours=2))
    with pytest.raises(errors.InvalidAccessKeyId):
        _verify("GET", path, query.replace("AKIDEXAMPLE", "AKIDOTHER"))
    with pytest.raises(errors.AuthorizationQueryParametersError):
        _verify("GET", path, query.replace("Expires=", "Expires=x"))


def test_signed_content_type_and_amz_headers():
    path, query = _presign("PUT", "http://h/bucket/key", {"Content-Type": "text/plain", "x-amz-acl": "private"})
    _verify("PUT", path, query, {"content-type": "text/plain", "x-amz-acl": "private"})
    with pytest.raises(errors.SignatureDoesNotMatch):
        _verify("PUT", path, query, {"content-type": "text/html", "x-amz-acl": "private"})


# --- x-amz-* query parameters, repeated headers, whitespace, numbers (security review findings 2, 7, 6) -------

def test_amz_query_parameters_are_signed_as_amz_headers():
    """botocore's HmacV1QueryAuth signs x-amz-* headers and then moves them into the query string."""
    path, query = _presign("PUT", "http://h/bucket/key", {"x-amz-meta-owner": "alice", "x-amz-acl": "private"})
    assert "x-amz-meta-owner=alice" in query
    _verify("PUT", path, query)                                              # only the URL
    _verify("PUT", path, query, {"x-amz-meta-owner": "alice"})              # the header repeated, same value
    with pytest.raises(errors.SignatureDoesNotMatch):
        _verify("PUT", path, query.replace("owner=alice", "owner=mallory"))
    with pytest.raises(errors.SignatureDoesNotMatch):
        _verify("PUT", path, query, {"x-amz-meta-owner": "mallory"})


@pytest.mark.parametrize("added", ["x-amz-copy-source=secret-bucket%2Fkey", "X-Amz-Copy-Source=b%2Fk",
                                   "x-amz-tagging=a%3Db", "x-amz-meta-x=1", "x-amz-security-token=t"])
def test_an_added_amz_query_parameter_breaks_the_signature(added):
    path, query = _presign("PUT", "http://h/bucket/key")
    with pytest.raises(errors.SignatureDoesNotMatch):
        _verify("PUT", path, query + "&" + added)


def test_an_added_amz_header_breaks_the_signature():
    path, query = _presign("PUT", "http://h/bucket/key")
    with pytest.raises(errors.SignatureDoesNotMatch):
        _verify("PUT", path, query, {"x-amz-copy-source": "b/k"})


def test_session_token_in_the_query_is_signed():
    request = AWSRequest("GET", "http://h/bucket/key")
    signer = HmacV1QueryAuth(Credentials("AKIDEXAMPLE", SECRET, "session+token/="), expires=60)
    signer._get_date = lambda: str(int(NOW.timestamp()) + 60)  # type: ignore[method-assign]
    signer.add_auth(request)
    parts = urlsplit(request.url)
    assert "x-amz-security-token=" in parts.query
    _verify("GET", parts.path, parts.query)
    with pytest.raises(errors.SignatureDoesNotMatch):
        _verify("GET", parts.path, parts.query.replace("x-amz-security-token=", "x-amz-security-token=x"))


def test_repeated_headers_are_all_signed():
    path, query = _presign("PUT", "http://h/bucket/key", {"x-amz-meta-a": "1"})
    with pytest.raises(errors.SignatureDoesNotMatch):  # not last-one-wins: the first would be acted on
        verify_presigned_v2("PUT", path, parse_query(query), [("x-amz-meta-a", "evil"), ("X-Amz-Meta-A", "1")],
                            None, {"AKIDEXAMPLE": SECRET}.get, NOW)


@pytest.mark.parametrize("space", ["\u00a0", "\u2028", "\u3000"])
def test_unicode_whitespace_around_a_signed_value_breaks_the_signature(space):
    path, query = _presign("PUT", "http://h/bucket/key", {"x-amz-acl": "private", "Content-Type": "text/plain"})
    headers = {"x-amz-acl": "private", "content-type": "text/plain"}
    _verify("PUT", path, query, {**headers, "x-amz-acl": " \tprivate\t "})  # ASCII space and tab are trimmed
    for name in headers:
        with pytest.raises(errors.SignatureDoesNotMatch):
            _verify("PUT", path, query, {**headers, name: headers[name] + space})


def test_undecodable_header_bytes_are_a_mismatch_not_a_crash():
    path, query = _presign("PUT", "http://h/bucket/key", {"x-amz-acl": "private"})
    with pytest.raises(errors.SignatureDoesNotMatch):
        _verify("PUT", path, query, {"x-amz-acl": "private\udcff"})
    # A query that does not decode as UTF-8 never reaches the verifier: the strict query reader refuses it.
    with pytest.raises(errors.InvalidURI):
        _verify("PUT", path, query.replace("Signature=", "Signature=%FF"))


@pytest.mark.parametrize("expires", ["²", "٣", "+1", "1_0", " 1", "", "-1", "1.5"])
def test_malformed_expires_is_a_query_parameters_error(expires):
    path, query = _presign("GET", "http://h/bucket/key")
    query = "&".join(p if not p.startswith("Expires=") else "Expires=" + quote(expires) for p in query.split("&"))
    with pytest.raises(errors.AuthorizationQueryParametersError):
        _verify("GET", path, query)


def test_a_huge_expires_is_read_not_a_crash():
    path, query = _presign("GET", "http://h/bucket/key")
    query = "&".join(p if not p.startswith("Expires=") else "Expires=" + "9" * 5000 for p in query.split("&"))
    with pytest.raises(errors.SignatureDoesNotMatch):
        _verify("GET", path, query)
