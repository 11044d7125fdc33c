"""The one map from what went wrong between the gateway and the object store to what the client sees.

Everything here is behind the gateway — the client did nothing wrong — so every outcome is a retryable 5xx that
SDKs retry on their own: 503 SlowDown when the gateway itself is out of upstream connections (the client should
back off), 503 ServiceUnavailable for the store being unreachable, refusing, resetting, timing out or cutting a
body short. Never a 4xx: a 4xx tells the SDK not to retry, and only the client's own mistakes earn one (those are
raised where the client's bytes are read: gateway.proxy.body). The store's own answers (status + S3 error
document) are relayed as they came (gateway.proxy.responses.relay_upstream_error) — a 5xx of the store stays a
5xx, a NoSuchKey stays a 404 — except the answers that blame the request the gateway built and signed, not the
client's: `store_refusal()`. Messages name the class of fault only, never addresses, credentials or the store's
bytes.
"""
from __future__ import annotations

import asyncio
import ssl

import aiohttp

from gateway import errors

# What talking to the store can raise: aiohttp's client errors, the OS's socket errors, timeouts (sock_read and
# connect surface as asyncio.TimeoutError subclasses), TLS failures.
STORE_FAULTS = (aiohttp.ClientError, OSError, asyncio.TimeoutError, ssl.SSLError)


def store_fault(exc: BaseException, *, pool_exhausted: bool = False) -> errors.S3Error:
    """The client's answer for a failure of a request to the store (or of reading its response body)."""
    if isinstance(exc, errors.S3Error):
        return exc
    if pool_exhausted:
        return errors.SlowDown("The gateway has no free connection to the object store; retry.")
    if isinstance(exc, asyncio.TimeoutError):
        return errors.UpstreamError("The object store did not answer in time; retry.")
    if isinstance(exc, (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError)):
        return errors.UpstreamError("The object store's connection broke off; retry.")
    if isinstance(exc, (aiohttp.ClientConnectorError, ConnectionRefusedError)):
        return errors.UpstreamError("The object store could not be reached; retry.")
    return errors.UpstreamError(f"The object store connection failed ({type(exc).__name__}); retry.")


# Store error codes about the request the gateway itself built: its credentials and signature, its framing (length,
# digests, payload hash, pace), or where it sent the request. The client's request was verified and is not at
# fault; relayed, these would tell an SDK not to retry (a 4xx) or send it to the store directly (a redirect).
GATEWAY_SIDE_CODES = frozenset({
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "TokenRefreshRequired",
    "RequestTimeTooSkewed", "AuthorizationHeaderMalformed", "AuthorizationQueryParametersError",
    "MissingSecurityHeader", "InvalidSecurity", "IncompleteBody", "XAmzContentSHA256Mismatch", "BadDigest",
    "InvalidDigest", "MissingContentLength", "RequestTimeout", "PermanentRedirect", "TemporaryRedirect",
    "Redirect"})


def store_refusal(code: str | None) -> errors.S3Error | None:
    """What the client gets for a store error document with this code, if it is not to be relayed as it came."""
    if code not in GATEWAY_SIDE_CODES:
        return None
    return errors.UpstreamError(f"The object store refused the gateway's request ({code}); retry.")
