"""Which bucket names, object keys and Host headers the gateway routes on. Pure.

Why this is a security boundary: the bucket becomes part of the upstream URL (`<bucket>.<store>` with virtual
addressing, `/<bucket>` with path addressing) and the gateway signs that request with its own credentials. A name
that is not a DNS label (`127.0.0.1:9000#`, `x/latest/meta-data`) would move the request to another host or
path, so nothing reaches the store unless it passed these checks.

Bucket names follow S3's current rules for general purpose buckets: 3-63 characters of lowercase letters, digits,
`.` and `-`; first and last a letter or digit; no `..`; not an IPv4 address. Also refused: `.-` and `-.`, a
label that begins or ends with a hyphen, which no DNS name (so no virtual-hosted bucket) has.
Decisions, for the threat model:
- Legacy names (buckets made in us-east-1 before March 2018 may have uppercase letters, `_`, or up to 255
  characters; S3 serves them path-style only) are refused: with virtual addressing they are not host names, and
  uppercase would make two names for one bucket in access policies. Such a bucket cannot be used through the
  gateway.
- The reserved prefixes and suffixes (`xn--`, `sthree-`, `amzn-s3-demo-`, `-s3alias`, `--ol-s3`, `.mrap`,
  `--x-s3`) are not refused: they are well-formed DNS labels (no routing hazard), the store refuses to create
  them, and some are the names clients legitimately use for access point aliases and directory buckets. Buckets
  made before a prefix was reserved stay reachable.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from gateway import errors

MAX_KEY_BYTES = 1024

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", re.ASCII)
_IPV4_FORM = re.compile(r"[0-9]+(?:\.[0-9]+){3}", re.ASCII)
# A host name in a Host header: labels of letters, digits, `-` and `_` (internal names such as Docker Compose
# services have underscores; they are never buckets), one optional trailing dot.
_HOST_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?", re.ASCII)
_PORT = re.compile(r"[0-9]{1,5}", re.ASCII)


def is_valid_bucket(name: object) -> bool:
    return (isinstance(name, str) and _BUCKET.fullmatch(name) is not None and ".." not in name
            and ".-" not in name and "-." not in name and _IPV4_FORM.fullmatch(name) is None)


def check_bucket(name: str) -> str:
    """`name` if S3 would route on it; InvalidBucketName otherwise (the name is not echoed)."""
    if not is_valid_bucket(name):
        raise errors.InvalidBucketName()
    return name


def check_key(key: str) -> str:
    """`key` if S3 accepts it as an object key (any UTF-8 of at most 1,024 bytes); KeyTooLongError otherwise."""
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 spelling, so not a key (nor quotable into a URL)
        raise errors.InvalidURI() from None
    if size > MAX_KEY_BYTES:
        raise errors.KeyTooLongError(Size=str(size), MaxSizeAllowed=str(MAX_KEY_BYTES))
    return key


def host_name(host: str) -> str:
    """The host name of a Host header value (`name[:port]`, `ipv4[:port]` or `[ipv6][:port]`), exactly as sent;
    InvalidArgument for anything else (a path, fragment, userinfo, whitespace, control or non-ASCII character)."""
    if not host.isascii():
        raise _bad_host()
    if host.startswith("["):
        literal, bracket, rest = host[1:].partition("]")
        if not bracket:
            raise _bad_host()
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            raise _bad_host() from None
        if rest and not (rest.startswith(":") and _PORT.fullmatch(rest[1:])):
            raise _bad_host()
        return f"[{literal}]"
    name, colon, port = host.partition(":")
    if colon and _PORT.fullmatch(port) is None:
        raise _bad_host()
    labels = name[:-1].split(".") if name.endswith(".") else name.split(".")
    if len(name) > 254 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise _bad_host()
    return name


def virtual_host_bucket(host: str | None, domains: Sequence[str]) -> str | None:
    """The bucket a Host header names under one of `domains` (`<bucket>.<domain>[:port]`), None for a Host that
    is not under any (path-style). The longest matching domain wins. Raises InvalidArgument for a malformed Host
    and InvalidBucketName when the part before the domain is not a valid bucket name (exactly: no case folding,
    so one bucket has one spelling)."""
    if not host:
        return None  # HTTP/1.0 without Host: path-style
    name = host_name(host)
    if name.startswith("["):
        return None
    name = name[:-1] if name.endswith(".") else name
    folded = name.lower()  # ASCII only (host_name checked): no Unicode case mapping can change the name
    best: str | None = None
    for domain in domains:
        suffix = "." + domain.lower().rstrip(".")
        if folded.endswith(suffix) and len(folded) > len(suffix) and (best is None or len(suffix) > len(best)):
            best = suffix
    if best is None:
        return None
    return check_bucket(name[: -len(best)])


def _bad_host() -> errors.S3Error:
    return errors.InvalidArgument("The Host header is not a valid host name and port.", ArgumentName="Host")
