"""The gateway acts only on what the client signed (security review findings 1, 2, 7 and 6 in part).

Each test replays an attack over a real socket: a presigned URL or a captured signed request with something
added or changed. The added part must never take effect: the request is refused with the S3 error a client
expects, and the store is left as it was.
"""
from __future__ import annotations

import http.client
import re
import uuid
from urllib.parse import quote, urlsplit

import boto3
import pytest
import requests
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from tests.conftest import REGION, client_for


def _key() -> str:
    return f"signed/{uuid.uuid4().hex}"


def _error_code(body: bytes) -> str | None:
    found = re.search(rb"<Code>([^<]*)</Code>", body)
    return found.group(1).decode() if found else None


def _presigner(stack, signature_version: str):
    return boto3.client("s3", endpoint_url=stack.http.url, region_name=REGION,
                        aws_access_key_id=stack.access_key_id, aws_secret_access_key=stack.secret_access_key,
                        config=Config(signature_version=signature_version, s3={"addressing_style": "path"}))


def _exists(store, bucket: str, key: str) -> bool:
    return store.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount", 0) > 0


def _header_signed(stack, method: str, url: str, headers: dict[str, str], body: bytes = b"") -> dict[str, str]:
    """The headers of a request signed the way boto3 signs it (every header given is signed): a captured request."""
    request = AWSRequest(method, url, data=body, headers=headers)
    S3SigV4Auth(Credentials(stack.access_key_id, stack.secret_access_key), "s3", REGION).add_auth(request)
    return dict(request.headers.items())


def _raw(url: str, method: str, headers: list[tuple[str, bytes | str]], body: bytes = b"") -> tuple[int, bytes]:
    """Send exactly these header bytes (http.client sends bytes values untouched), Host included."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.putrequest(method, parts.path + (f"?{parts.query}" if parts.query else ""), skip_host=True,
                              skip_accept_encoding=True)
        for name, value in headers:
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# --- finding 1: unsigned x-amz-* headers -----------------------------------------------------------------------

@pytest.fixture
def secret_object(s3, stack):
    key = _key() + "-secret"
    s3.put_object(Bucket=stack.bucket, Key=key, Body=b"the secret")
    return key


def test_presigned_put_with_an_added_copy_source_is_refused(s3, stack, store, secret_object):
    slot = _key()
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": stack.bucket, "Key": slot}, ExpiresIn=300)
    response = requests.put(put_url, data=b"", timeout=30,
                            headers={"x-amz-copy-source": f"{stack.bucket}/{secret_object}"})
    assert response.status_code == 403 and _error_code(response.content) == "AccessDenied"
    assert b"<HeadersNotSigned>x-amz-copy-source</HeadersNotSigned>" in response.content
    assert not _exists(store, stack.bucket, slot)
    # The URL still does what it was signed for.
    assert requests.put(put_url, data=b"own body", timeout=30).status_code == 200
    assert s3.get_object(Bucket=stack.bucket, Key=slot)["Body"].read() == b"own body"


def test_captured_header_signed_put_with_an_added_copy_source_is_refused(stack, store, secret_object):
    slot = _key()
    url = f"{stack.http.url}/{stack.bucket}/{slot}"
    headers = _header_signed(stack, "PUT", url, {}, b"")
    response = requests.put(url, data=b"", timeout=30,
                            headers={**headers, "x-amz-copy-source": f"{stack.bucket}/{secret_object}"})
    assert response.status_code == 403 and _error_code(response.content) == "AccessDenied"
    assert not _exists(store, stack.bucket, slot)
    assert requests.put(url, data=b"", headers=headers, timeout=30).status_code == 200  # the capture itself is fine


@pytest.mark.parametrize("name,value", [("x-amz-meta-note", "approved"), ("x-amz-tagging", "a=b"),
                                        ("x-amz-website-redirect-location", "/elsewhere")])
def test_unsigned_amz_headers_are_not_stored(s3, stack, store, name, value):
    slot = _key()
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": stack.bucket, "Key": slot}, ExpiresIn=300)
    response = requests.put(put_url, data=b"body", headers={name: value}, timeout=30)
    assert response.status_code == 403 and _error_code(response.content) == "AccessDenied"
    assert not _exists(store, stack.bucket, slot)


def test_presigned_url_with_signed_amz_header_still_works(s3, stack):
    slot = _key()
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": stack.bucket, "Key": slot,
                                                              "Metadata": {"note": "approved"}}, ExpiresIn=300)
    assert "x-amz-meta-note" in urlsplit(put_url).query.lower()  # boto3 signs it in SignedHeaders
    response = requests.put(put_url, data=b"body", headers={"x-amz-meta-note": "approved"}, timeout=30)
    assert response.status_code == 200, response.content
    assert s3.head_object(Bucket=stack.bucket, Key=slot)["Metadata"] == {"note": "approved"}


# --- finding 2: SigV2 presigned URLs and their x-amz-* query parameters ---------------------------------------

def test_sigv2_presigned_put_with_an_added_copy_source_parameter_is_refused(stack, store, secret_object):
    slot = _key()
    put_url = _presigner(stack, "s3").generate_presigned_url(
        "put_object", Params={"Bucket": stack.bucket, "Key": slot}, ExpiresIn=300)
    assert "AWSAccessKeyId=" in put_url
    tampered = put_url + "&x-amz-copy-source=" + quote(f"{stack.bucket}/{secret_object}", safe="")
    response = requests.put(tampered, data=b"", timeout=30)
    assert response.status_code == 403 and _error_code(response.content) == "SignatureDoesNotMatch"
    assert not _exists(store, stack.bucket, slot)


def test_sigv2_presigned_put_with_metadata_in_the_query_works(stack, s3, store):
    """boto3 with signature_version='s3' moves x-amz-meta-* into the query string and signs them there."""
    slot = _key()
    put_url = _presigner(stack, "s3").generate_presigned_url(
        "put_object", Params={"Bucket": stack.bucket, "Key": slot, "Metadata": {"owner": "alice"}}, ExpiresIn=300)
    assert "x-amz-meta-owner=alice" in put_url
    response = requests.put(put_url, data=b"with metadata", timeout=30)  # only the URL, no header
    assert response.status_code == 200, response.content
    assert s3.head_object(Bucket=stack.bucket, Key=slot)["Metadata"] == {"owner": "alice"}
    assert s3.get_object(Bucket=stack.bucket, Key=slot)["Body"].read() == b"with metadata"
    changed = put_url.replace("x-amz-meta-owner=alice", "x-amz-meta-owner=mallory")
    response = requests.put(changed, data=b"x", timeout=30)
    assert response.status_code == 403 and _error_code(response.content) == "SignatureDoesNotMatch"
    assert s3.head_object(Bucket=stack.bucket, Key=slot)["Metadata"] == {"owner": "alice"}


def test_sigv2_presigned_put_with_an_added_amz_header_is_refused(stack, store):
    slot = _key()
    put_url = _presigner(stack, "s3").generate_presigned_url(
        "put_object", Params={"Bucket": stack.bucket, "Key": slot}, ExpiresIn=300)
    response = requests.put(put_url, data=b"x", headers={"x-amz-meta-note": "approved"}, timeout=30)
    assert response.status_code == 403 and _error_code(response.content) == "SignatureDoesNotMatch"
    assert not _exists(store, stack.bucket, slot)


# --- finding 7: unicode whitespace around signed values --------------------------------------------------------

def test_signed_metadata_with_trailing_unicode_space_is_refused(stack, store):
    slot = _key()
    url = f"{stack.http.url}/{stack.bucket}/{slot}"
    headers = _header_signed(stack, "PUT", url, {"x-amz-meta-note": "approved"}, b"body")
    sent = [(name, value) for name, value in headers.items() if name.lower() != "x-amz-meta-note"]
    sent.append(("Host", urlsplit(url).netloc))  # signed by botocore, sent by the HTTP library
    status, body = _raw(url, "PUT", sent + [("x-amz-meta-note", "approved".encode() + "\u00a0".encode())], b"body")
    assert status == 403 and _error_code(body) == "SignatureDoesNotMatch", body
    assert not _exists(store, stack.bucket, slot)
    status, body = _raw(url, "PUT", sent + [("x-amz-meta-note", b"approved")], b"body")  # as signed: fine
    assert status == 200, body


def test_leading_unicode_space_in_a_signed_host_is_refused(stack, s3):
    key = _key()
    s3.put_object(Bucket=stack.bucket, Key=key, Body=b"body")
    url = f"{stack.http.url}/{stack.bucket}/{key}"
    headers = _header_signed(stack, "GET", url, {})
    sent = [(name, value) for name, value in headers.items() if name.lower() != "host"]
    status, body = _raw(url, "GET", sent + [("Host", "\u2028".encode() + urlsplit(url).netloc.encode())])
    assert 400 <= status < 500 and _error_code(body) is not None and b"the secret" not in body
    assert _raw(url, "GET", sent + [("Host", urlsplit(url).netloc)])[0] == 200


# --- finding 6 (part): numbers in auth parameters --------------------------------------------------------------

@pytest.mark.parametrize("query,status,code", [
    ("AWSAccessKeyId=x&Signature=y&Expires=%C2%B2", 400, "AuthorizationQueryParametersError"),
    ("AWSAccessKeyId=x&Signature=y&Expires=" + "9" * 5000, 403, "InvalidAccessKeyId"),
    ("AWSAccessKeyId=x&Signature=y&Expires=%2B1", 400, "AuthorizationQueryParametersError"),
    ("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=x%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
     "&X-Amz-Date=20260101T000000Z&X-Amz-Expires=%C2%B2&X-Amz-SignedHeaders=host&X-Amz-Signature=y",
     400, "AuthorizationQueryParametersError"),
    ("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=x%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
     "&X-Amz-Date=20260101T000000Z&X-Amz-Expires=" + "9" * 5000 + "&X-Amz-SignedHeaders=host&X-Amz-Signature=y",
     400, "AuthorizationQueryParametersError"),
    ("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=x%2F%EF%BC%92%EF%BC%90%EF%BC%92%EF%BC%96%EF%BC%90%EF%BC%91"
     "%EF%BC%90%EF%BC%91%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=%EF%BC%92%EF%BC%90%EF%BC%92%EF%BC%96%EF%BC%90"
     "%EF%BC%91%EF%BC%90%EF%BC%91T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Signature=y",
     400, "AuthorizationQueryParametersError"),
])
def test_malformed_numbers_in_auth_parameters_are_a_4xx(stack, query, status, code):
    response = requests.get(f"{stack.http.url}/{stack.bucket}/k?{query}", timeout=30)
    assert (response.status_code, _error_code(response.content)) == (status, code)
    assert b"Traceback" not in response.content and b"999999" not in response.content


@pytest.mark.parametrize("date", ["Mon, 01 Jan 0001 00:00:00 +0100", "Mon, 01 Jan 9999 23:59:59 -2359"])
def test_extreme_date_headers_are_a_4xx(stack, date):
    url = f"{stack.http.url}/{stack.bucket}/k"
    headers = _header_signed(stack, "GET", url, {})
    headers = {k: v for k, v in headers.items() if k.lower() != "x-amz-date"}
    response = requests.get(url, headers={**headers, "Date": date}, timeout=30)
    assert 400 <= response.status_code < 500 and _error_code(response.content) is not None


def test_real_clients_still_sign_what_they_send(stack):
    s3 = client_for(stack, stack.http.url)
    key = _key()
    s3.put_object(Bucket=stack.bucket, Key=key, Body=b"x", Metadata={"a": "b"}, Tagging="t=1",
                  WebsiteRedirectLocation="/r", ContentType="text/plain")
    assert s3.head_object(Bucket=stack.bucket, Key=key)["Metadata"] == {"a": "b"}
    s3.copy_object(Bucket=stack.bucket, Key=key + "-copy", CopySource={"Bucket": stack.bucket, "Key": key})
    assert s3.get_object(Bucket=stack.bucket, Key=key + "-copy")["Body"].read() == b"x"


def test_an_undecodable_byte_in_the_credential_region_is_a_signature_mismatch(stack):
    """Found by the fuzz properties: a non-UTF-8 byte in the scope's region was a 500 while deriving the key."""
    url = f"{stack.http.url}/{stack.bucket}/k"
    headers = _header_signed(stack, "GET", url, {})
    sent = [(name, value) for name, value in headers.items() if name.lower() != "authorization"]
    authorization = headers["Authorization"].encode().replace(f"/{REGION}/".encode(), b"/\xff/")
    status, body = _raw(url, "GET", sent + [("Host", urlsplit(url).netloc), ("Authorization", authorization)])
    assert (status, _error_code(body)) == (403, "SignatureDoesNotMatch")
