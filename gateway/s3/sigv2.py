"""SigV2 query-string authentication (presigned URLs), verification only. Sans-I/O.

boto3's `generate_presigned_url` still produces SigV2 URLs (`?AWSAccessKeyId=…&Expires=…&Signature=…`) unless
the client is configured for s3v4, so a transparent gateway must accept them. Header-based SigV2 is refused
(no current SDK sends it by default). The gateway re-signs everything it forwards with SigV4.
"""
from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
from collections.abc import Callable

from gateway.errors import AccessDenied, AuthorizationQueryParametersError, InvalidAccessKeyId, SignatureDoesNotMatch
from gateway.s3.sigv4 import UNSIGNED_PAYLOAD, VerifiedRequest

# Sub-resources and response overrides that take part in the string to sign (S3's SigV2 rules).
_SIGNED_QUERY = frozenset({
    "accelerate", "acl", "analytics", "cors", "delete", "inventory", "lifecycle", "location", "logging", "metrics",
    "notification", "object-lock", "partNumber", "policy", "replication", "requestPayment", "response-cache-control",
    "response-content-disposition", "response-content-encoding", "response-content-language",
    "response-content-type", "response-expires", "restore", "select", "select-type", "storageClass", "tagging",
    "torrent", "uploadId", "uploads", "versionId", "versioning", "versions", "website"})
_QUERY_AUTH = ("AWSAccessKeyId", "Expires", "Signature")


def is_presigned_v2(query: dict[str, str]) -> bool:
    return all(name in query for name in _QUERY_AUTH)


def _canonical_resource(raw_path: str, bucket_from_host: str | None, params: list[tuple[str, str]]) -> str:
    # The path as sent (still percent-encoded); virtual-hosted requests sign "/<bucket>" in front of it.
    resource = (f"/{bucket_from_host}" if bucket_from_host else "") + raw_path
    signed = sorted((k, v) for k, v in params if k in _SIGNED_QUERY)
    if signed:
        resource += "?" + "&".join(f"{k}={v}" if v else k for k, v in signed)
    return resource


def verify_presigned_v2(method: str, raw_path: str, params: list[tuple[str, str]], headers: dict[str, str],
                        bucket_from_host: str | None, secret_for: Callable[[str], str | None],
                        now: datetime.datetime) -> VerifiedRequest:
    """Check a SigV2 presigned request; `params` are the decoded query parameters, `headers` lower-cased."""
    query = dict(params)
    access_key_id, expires, claimed = (query[name] for name in _QUERY_AUTH)
    if not expires.isdigit():
        raise AuthorizationQueryParametersError("Expires must be a number of seconds since the epoch.")
    if now.timestamp() > int(expires):
        raise AccessDenied("Request has expired", Expires=expires)
    secret = secret_for(access_key_id)
    if secret is None:
        raise InvalidAccessKeyId(AWSAccessKeyId=access_key_id)
    amz_headers = sorted((k, v.strip()) for k, v in headers.items() if k.startswith("x-amz-"))
    string_to_sign = "\n".join([method, headers.get("content-md5", ""), headers.get("content-type", ""), expires,
                                *(f"{k}:{v}" for k, v in amz_headers),
                                _canonical_resource(raw_path, bucket_from_host, params)])
    expected = base64.b64encode(hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha1).digest()).decode()
    if not hmac.compare_digest(expected.encode(), claimed.encode()):
        raise SignatureDoesNotMatch(AWSAccessKeyId=access_key_id)
    return VerifiedRequest(access_key_id=access_key_id, payload_hash=UNSIGNED_PAYLOAD, presigned=True, amz_date="",
                           scope="", signature="", key=b"")
