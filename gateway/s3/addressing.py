"""Where a request points: bucket and key from path-style or virtual-hosted-style addressing. Pure."""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from gateway import errors
from gateway.s3.names import check_bucket, check_key, virtual_host_bucket

# Presigned-URL authentication parameters: consumed by the gateway, never forwarded or routed on.
_AUTH_QUERY = {"x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-expires", "x-amz-signedheaders",
               "x-amz-signature", "x-amz-security-token", "x-amz-content-sha256",
               "awsaccesskeyid", "expires", "signature"}  # the last three: SigV2 presigned URLs
# `x-id` is a routing hint the AWS SDKs append (e.g. `?x-id=PutObject`); S3 ignores it, and so do we.
_IGNORED_QUERY = {"x-id"}
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_STRAY_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


@dataclass(frozen=True)
class Target:
    bucket: str | None
    key: str | None
    raw_path: str                      # undecoded path as received (for the client's signature)
    raw_query: str                     # undecoded query as received (for the client's signature)
    query: tuple[tuple[str, str], ...]  # decoded parameters to route on and forward (auth parameters and
    #                                     hoisted headers removed)
    virtual_hosted: bool = False       # the bucket came from the Host header
    # x-amz-* headers a presigner moved into the query string (SigV2 presigners, aws-sdk-js v3): S3 reads them
    # as headers, and so does the gateway, with every check it applies to headers.
    hoisted_headers: tuple[tuple[str, str], ...] = ()

    @property
    def query_map(self) -> dict[str, str]:
        return dict(self.query)


def parse_query(raw_query: str) -> list[tuple[str, str]]:
    """Decoded (name, value) pairs; InvalidURI for an escape that is not UTF-8 (it must not become U+FFFD: the
    value routed on would differ from the one signed)."""
    # `+` stays a plus: S3 clients encode spaces as %20, and a key or prefix may contain a literal `+`.
    params = []
    for part in raw_query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        params.append((_decode(name), _decode(value)))
    return params


def _decode(raw: str) -> str:
    """Percent-decode exactly: every `%` starts two hex digits, the bytes are UTF-8, the raw text is ASCII without
    controls. Anything else is a URI S3 cannot parse either."""
    if not raw.isascii() or _CONTROL.search(raw) or _STRAY_PERCENT.search(raw):
        raise errors.InvalidURI()
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise errors.InvalidURI() from None


def resolve(raw_target: str, host: str | None, virtual_host_domains: Sequence[str]) -> Target:
    """Split a request target (path?query, undecoded) and its Host header into bucket, key and query.

    Every bucket in a returned Target is a valid S3 bucket name and every key is valid UTF-8 of at most 1,024
    bytes: the upstream URL is built from these. Anything else raises an S3Error (InvalidURI, InvalidBucketName,
    KeyTooLongError, InvalidArgument for a malformed Host) before a byte goes upstream."""
    raw_path, _, raw_query = raw_target.partition("?")
    if not raw_path.startswith("/"):
        raise errors.InvalidURI()  # absolute-form (`GET http://other/...`) or `*`: not an S3 request
    params = [(k, v) for k, v in parse_query(raw_query)
              if k.lower() not in _AUTH_QUERY and k.lower() not in _IGNORED_QUERY]
    query = tuple((k, v) for k, v in params if not k.lower().startswith("x-amz-"))
    hoisted = tuple((k.lower(), v) for k, v in params if k.lower().startswith("x-amz-"))
    bucket = virtual_host_bucket(host, virtual_host_domains)
    if bucket is not None:
        return Target(bucket, _key(raw_path[1:]), raw_path, raw_query, query, virtual_hosted=True,
                      hoisted_headers=hoisted)
    if raw_path == "/":
        return Target(None, None, raw_path, raw_query, query, hoisted_headers=hoisted)
    # Split before decoding, as S3 does: `/a%2Fb/k` names the bucket `a/b` (invalid), not bucket `a`, key `b/k`.
    raw_bucket, _, raw_key = raw_path[1:].partition("/")
    return Target(check_bucket(_decode(raw_bucket)), _key(raw_key), raw_path, raw_query, query,
                  hoisted_headers=hoisted)


def _key(raw: str) -> str | None:
    return check_key(_decode(raw)) if raw else None
