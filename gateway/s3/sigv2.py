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
from gateway.numerals import decimal
from gateway.s3.sigv4 import UNSIGNED_PAYLOAD, VerifiedRequest

# Sub-resources and response overrides that take part in the string to sign (S3's SigV2 rules).
_SIGNED_QUERY = frozenset({
    "accelerate", "acl", "analytics", "cors", "delete", "inventory", "lifecycle", "location", "logging", "metrics",
    "notification", "object-lock", "partNumber", "policy", "replication", "requestPayment", "response-cache-control",
    "response-content-disposition", "response-content-encoding", "response-content-language",
    "response-content-type", "response-expires", "restore", "select", "select-type", "storageClass", "tagging",
    "torrent", "uploadId", "uploads", "versionId", "versioning", "versions", "website"})
_QUERY_AUTH = ("AWSAccessKeyId", "Expires", "Signature")
_SPACES = " \t"


def is_presigned_v2(query: dict[str, str]) -> bool:
    return all(name in query for name in _QUERY_AUTH)


def _canonical_resource(raw_path: str, bucket_from_host: str | None, params: list[tuple[str, str]]) -> str:
    # The path as sent (still percent-encoded); virtual-hosted requests sign "/<bucket>" in front of it.
    resource = (f"/{bucket_from_host}" if bucket_from_host else "") + raw_path
    signed = sorted((k, v) for k, v in params if k in _SIGNED_QUERY)
    if signed:
        resource += "?" + "&".join(f"{k}={v}" if v else k for k, v in signed)
    return resource


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _trimmed(value: str) -> str:
    # ASCII space and tab only: every other character received is covered by the signature (finding 7).
    return value.strip(_SPACES)


def _amz_headers(headers: list[tuple[str, str]], params: list[tuple[str, str]]) -> list[str]:
    """CanonicalizedAmzHeaders: every x-amz-* header *and* every x-amz-* query parameter, `name:value`, sorted.

    Presigners move x-amz-* headers into the query string (botocore's HmacV1QueryAuth, with the session token and
    user metadata), and the gateway reads those parameters as headers: they must be signed like headers, or a
    `&x-amz-copy-source=...` added to a presigned PUT would turn it into a copy of another object (finding 2).
    Repeated headers are one comma-joined value, as botocore signs them (not last-one-wins: the first is the one
    acted on). A parameter repeating a header's value is the same header; a different one is a second value."""
    amz: dict[str, list[str]] = {}
    for name, value in headers:
        if name.lower().startswith("x-amz-"):
            amz.setdefault(name.lower(), []).append(_trimmed(value))
    for name, value in params:
        if name.lower().startswith("x-amz-") and _trimmed(value) not in amz.setdefault(name.lower(), []):
            amz[name.lower()].append(_trimmed(value))
    return [f"{name}:{','.join(values)}" for name, values in sorted(amz.items())]


def _standard_header(headers: list[tuple[str, str]], name: str) -> str:
    return ",".join(_trimmed(value) for n, value in headers if n.lower() == name)


def verify_presigned_v2(method: str, raw_path: str, params: list[tuple[str, str]], headers: list[tuple[str, str]],
                        bucket_from_host: str | None, secret_for: Callable[[str], str | None],
                        now: datetime.datetime) -> VerifiedRequest:
    """Check a SigV2 presigned request; `params` are the decoded query parameters, `headers` as received."""
    query = dict(params)
    access_key_id, expires, claimed = (query[name] for name in _QUERY_AUTH)
    # Capped, not refused, when huge: a far-future expiry is still a valid (long-lived) URL.
    expiry = decimal(expires)
    if expiry is None:
        raise AuthorizationQueryParametersError("Expires must be a number of seconds since the epoch.")
    if now.timestamp() > expiry:
        # Named as S3 names it (ISO 8601), not echoed as sent.
        raise AccessDenied("Request has expired", Expires=_iso(expiry), ServerTime=_iso(now.timestamp()))
    secret = secret_for(access_key_id)
    if not secret:
        raise InvalidAccessKeyId(AWSAccessKeyId=access_key_id)
    string_to_sign = "\n".join([method, _standard_header(headers, "content-md5"),
                                _standard_header(headers, "content-type"), expires, *_amz_headers(headers, params),
                                _canonical_resource(raw_path, bucket_from_host, params)])
    # surrogateescape: the HTTP stack hands over undecodable header bytes as surrogates; sign them byte-exact.
    digest = hmac.digest(secret.encode(), string_to_sign.encode("utf-8", "surrogateescape"), hashlib.sha1)
    expected = base64.b64encode(digest)
    if not hmac.compare_digest(expected, claimed.encode("utf-8", "surrogateescape")):
        raise SignatureDoesNotMatch(AWSAccessKeyId=access_key_id)
    return VerifiedRequest(access_key_id=access_key_id, payload_hash=UNSIGNED_PAYLOAD, presigned=True, amz_date="",
                           scope="", signature="", key=b"")
