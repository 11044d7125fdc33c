"""SigV2 presigned URLs, checked against botocore's own SigV2 query signer (what boto3's default presign uses)."""
from __future__ import annotations

import datetime
from urllib.parse import urlsplit

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
