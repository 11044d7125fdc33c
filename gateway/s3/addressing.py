"""Where a request points: bucket and key from path-style or virtual-hosted-style addressing. Pure."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote

# Presigned-URL authentication parameters: consumed by the gateway, never forwarded or routed on.
_AUTH_QUERY = {"x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-expires", "x-amz-signedheaders",
               "x-amz-signature", "x-amz-security-token", "x-amz-content-sha256",
               "awsaccesskeyid", "expires", "signature"}  # the last three: SigV2 presigned URLs
# `x-id` is a routing hint the AWS SDKs append (e.g. `?x-id=PutObject`); S3 ignores it, and so do we.
_IGNORED_QUERY = {"x-id"}


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
    # `+` stays a plus: S3 clients encode spaces as %20, and a key or prefix may contain a literal `+`.
    params = []
    for part in raw_query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        params.append((unquote(name), unquote(value)))
    return params


def _host_bucket(host: str, domains: Sequence[str]) -> str | None:
    hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    hostname = hostname.lower().rstrip(".")
    for domain in domains:
        suffix = "." + domain.lower().rstrip(".")
        if hostname.endswith(suffix) and len(hostname) > len(suffix):
            return hostname[: -len(suffix)]
    return None


def resolve(raw_target: str, host: str, virtual_host_domains: Sequence[str]) -> Target:
    """Split a request target (path?query, undecoded) into bucket, key and query."""
    raw_path, _, raw_query = raw_target.partition("?")
    params = [(k, v) for k, v in parse_query(raw_query)
              if k.lower() not in _AUTH_QUERY and k.lower() not in _IGNORED_QUERY]
    query = tuple((k, v) for k, v in params if not k.lower().startswith("x-amz-"))
    hoisted = tuple((k.lower(), v) for k, v in params if k.lower().startswith("x-amz-"))
    path = unquote(raw_path)
    bucket = _host_bucket(host, virtual_host_domains)
    if bucket is not None:
        key = path[1:] if path.startswith("/") else path
        return Target(bucket, key or None, raw_path, raw_query, query, virtual_hosted=True, hoisted_headers=hoisted)
    stripped = path[1:] if path.startswith("/") else path
    if not stripped:
        return Target(None, None, raw_path, raw_query, query, hoisted_headers=hoisted)
    bucket, sep, key = stripped.partition("/")
    return Target(bucket, key if sep and key else None, raw_path, raw_query, query, hoisted_headers=hoisted)
