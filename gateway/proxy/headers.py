"""Which headers cross the gateway, in each direction. Pure functions over header mappings."""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from gateway import errors
from gateway.s3.checksums import CHECKSUM_PREFIX, is_checksum_header
from gateway.s3.metadata import RESERVED_PREFIX

# Hop-by-hop headers (RFC 9110 §7.6.1) and the ones aiohttp computes for the message it sends.
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
               "transfer-encoding", "upgrade", "host", "content-length", "expect"}
# The client's signature and body framing: meaningless once the gateway re-signs and re-frames the body.
_CLIENT_AUTH = {"authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token", "date"}

# Server-side encryption a client asks of S3 on a write (rclone with `server_side_encryption = aws:kms`, SDKs with
# ServerSideEncryption): the object gets the gateway's envelope encryption under its own KMS key, which responses
# report. The store is not asked to encrypt the ciphertext again: that is its bucket default encryption's business
# (the operator's), and a client-named KMS key would need permissions the gateway's role need not have.
CLIENT_SSE_HEADERS = frozenset({"x-amz-server-side-encryption", "x-amz-server-side-encryption-aws-kms-key-id",
                                "x-amz-server-side-encryption-context",
                                "x-amz-server-side-encryption-bucket-key-enabled"})

# Response headers computed by the gateway for the plaintext view, or describing the stored ciphertext.
_RESPONSE_DROP = _HOP_BY_HOP | {"content-range", "content-md5", "server", "date", "x-amz-request-id",
                                "x-amz-server-side-encryption", "x-amz-server-side-encryption-aws-kms-key-id",
                                "x-amz-server-side-encryption-context",
                                "x-amz-server-side-encryption-bucket-key-enabled", "x-amz-checksum-type"}


def forwardable_request_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Client request headers to send upstream (lower-case names; repeated names joined as HTTP allows)."""
    out: dict[str, str] = {}
    for name, value in headers:
        lname = name.lower()
        # Checksums describe the client's plaintext: verified here, never sent along with ciphertext.
        if lname in _HOP_BY_HOP or lname in _CLIENT_AUTH or is_checksum_header(lname):
            continue
        out[lname] = f"{out[lname]},{value}" if lname in out else value
    encoding = out.pop("content-encoding", None)
    if encoding is not None:
        # `aws-chunked` describes the request framing, not the content: S3 does not store it.
        kept = [t.strip() for t in encoding.split(",") if t.strip() and t.strip().lower() != "aws-chunked"]
        if kept:
            out["content-encoding"] = ",".join(kept)
    return out


def object_write_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Headers for an upstream object write: the forwardable ones, refusing what the gateway cannot honour and
    without the client's SSE request (the gateway's encryption answers it)."""
    out = {name: value for name, value in forwardable_request_headers(headers).items()
           if name not in CLIENT_SSE_HEADERS}
    if any(name.startswith("x-amz-server-side-encryption-customer-") for name in out):
        raise errors.NotImplementedS3("SSE-C is not supported: the gateway encrypts objects itself.")
    if "x-amz-copy-source" in out:
        raise errors.NotImplementedS3("CopyObject is not supported by this gateway version yet.")
    return out


def client_response_headers(upstream: Mapping[str, str]) -> dict[str, str]:
    """Upstream response headers a client may see: no ciphertext checksums, sizes or the gateway's own metadata."""
    out: dict[str, str] = {}
    for name, value in upstream.items():
        lname = name.lower()
        if lname in _RESPONSE_DROP or lname.startswith(CHECKSUM_PREFIX) or lname.startswith(RESERVED_PREFIX):
            continue
        out[name] = value
    return out
