"""Every way a KMS call can end other than with a good answer, sorted in one place: what it is counted as, whether
another attempt may succeed, whether it means KMS itself is failing (the circuit breaker's business), and which
error the client gets when no attempt is left. Pure: gateway.keys.endpoint makes the calls and consults this.

Three kinds:
- KMS failing (its 5xx, no answer, a timeout, a broken connection or TLS handshake, an answer that is not KMS's):
  retried within `kms.retry.deadline_seconds`, counted by the breaker, then `503 KMS.ServiceUnavailable`.
- KMS throttling (an answer: KMS is up): retried, not counted by the breaker, then `503 SlowDown`.
- Final answers: the key is unusable or the gateway is not allowed to use it (the 403 family, as S3's own SSE-KMS
  answers); the wrapped key does not belong to this object (the integrity failure, 500 like a failed segment);
  anything else KMS refuses is a request the gateway should not have made: a gateway bug, `500 KMS.InternalError`.

A fault that may pass (the first two kinds) also lets a read try the object's copy under the second region's key
(`REGION_FAULTS`); a final answer does not: a key revoked in one region must not be read through the other.

Codes are matched by name, never by message, and the errors carry fixed messages: KMS messages can echo request
fields. An unknown code is sorted by its HTTP status, the way botocore's own retry rules do (5xx and 429 may pass).
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from botocore.exceptions import (BotoCoreError, ConnectTimeoutError, CredentialRetrievalError, NoCredentialsError,
                                 ParamValidationError, PartialCredentialsError, ReadTimeoutError, ValidationError)
from botocore.parsers import ResponseParserError

from gateway import errors


@dataclass(frozen=True)
class Fault:
    outcome: str  # the `outcome` label of envelope_kms_requests_total
    retryable: bool  # another attempt may succeed
    kms_failing: bool  # counted by the circuit breaker as KMS not serving
    error: Callable[[], errors.S3Error]  # what the client gets when no attempt is left


def _unavailable(why: str) -> Callable[[], errors.S3Error]:
    return lambda: errors.KMSUnavailable(why)


_FAILING = Fault("kms_failure", True, True, _unavailable("The key management service is failing."))
_THROTTLED = Fault("throttled", True, False,
                   lambda: errors.SlowDown("The key management service is throttling requests."))
_DENIED = Fault("denied", False, False, errors.KMSAccessDenied)
_TAMPERED = Fault("invalid_ciphertext", False, False, lambda: errors.TamperedCiphertext(
    "The object's data key does not belong to this bucket and key (copied or swapped outside the gateway?)."))
_GATEWAY_BUG = Fault("error", False, False, errors.KMSError)
UNREACHABLE = Fault("unreachable", True, True, _unavailable("The key management service is unreachable."))
TIMED_OUT = Fault("timeout", True, True, _unavailable("The key management service did not answer in time."))
BAD_ANSWER = Fault("bad_answer", True, True,
                   _unavailable("The key management service's answer could not be understood."))

# KMS error codes (the `__type` of its JSON errors, as botocore reports them).
BY_CODE: dict[str, Fault] = {
    # KMS's own failures (HTTP 500/503), and those of the services in front of it.
    "KMSInternalException": _FAILING,
    "InternalFailure": _FAILING,
    "InternalError": _FAILING,
    "ServiceUnavailable": _FAILING,
    "ServiceUnavailableException": _FAILING,
    "DependencyTimeoutException": _FAILING,
    # The key's backing store (a custom key store, an XKS proxy) is not answering: KMS says to retry.
    "KeyUnavailableException": _FAILING,
    "ThrottlingException": _THROTTLED,
    "Throttling": _THROTTLED,
    "TooManyRequestsException": _THROTTLED,
    "RequestLimitExceeded": _THROTTLED,
    "LimitExceededException": _THROTTLED,
    # The master key cannot be used: revoked, deleted, or not a symmetric encryption key. An operator's doing.
    "DisabledException": Fault("key_unusable", False, False, errors.KMSKeyDisabled),
    "KMSInvalidStateException": Fault("key_unusable", False, False, errors.KMSKeyInvalidState),
    "InvalidKeyUsageException": Fault("key_unusable", False, False, errors.KMSKeyInvalidState),
    "NotFoundException": Fault("key_unusable", False, False, errors.KMSKeyNotFound),
    # The gateway's own credentials or permissions.
    "AccessDeniedException": _DENIED,
    "UnauthorizedException": _DENIED,
    "UnrecognizedClientException": _DENIED,
    "InvalidSignatureException": _DENIED,
    "IncompleteSignature": _DENIED,
    "MissingAuthenticationToken": _DENIED,
    "ExpiredTokenException": _DENIED,
    # This wrapped key and encryption context (bucket, key) were not stored together.
    "InvalidCiphertextException": _TAMPERED,
    "IncorrectKeyException": _TAMPERED,
}

# What a read may answer by trying the object's copy under the other region's key (every retryable fault ends
# as one of these).
REGION_FAULTS = (errors.KMSUnavailable, errors.SlowDown)


def for_answer(code: str, status: int | None) -> Fault:
    """The fault of an error answer from KMS: by its code; an unknown one by its HTTP status."""
    known = BY_CODE.get(code)
    if known is not None:
        return known
    if status is not None and status >= 500:
        return _FAILING
    if status == 429:
        return _THROTTLED
    return _GATEWAY_BUG


def for_exception(exc: BaseException) -> Fault | None:
    """The fault of a call that ended without an error answer (None: not a KMS fault, let it propagate)."""
    if isinstance(exc, (ParamValidationError, ValidationError)):
        return _GATEWAY_BUG  # botocore refused our parameters before sending anything
    if isinstance(exc, (ReadTimeoutError, ConnectTimeoutError, asyncio.TimeoutError)):
        return TIMED_OUT  # includes our own deadline cutting an attempt off
    if isinstance(exc, ResponseParserError):
        return BAD_ANSWER
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError)):
        return UNREACHABLE  # the credential source (instance metadata, STS) is behind the gateway too
    if isinstance(exc, (BotoCoreError, OSError)):  # refused, reset, closed, TLS, DNS, proxy
        return UNREACHABLE
    return None


# The fields each operation's answer must have, and their types: a 200 from something that is not KMS (a proxy's
# HTML page) parses as an empty answer.
_ANSWER_FIELDS: dict[str, dict[str, type]] = {
    "GenerateDataKey": {"KeyId": str, "Plaintext": bytes, "CiphertextBlob": bytes},
    "Decrypt": {"KeyId": str, "Plaintext": bytes},
    "Encrypt": {"KeyId": str, "CiphertextBlob": bytes},
    "ReEncrypt": {"KeyId": str, "CiphertextBlob": bytes},
    "DescribeKey": {"KeyMetadata": dict},
}


def complete(operation: str, answer: dict[str, object]) -> bool:
    """Does a successful answer carry what the gateway reads from it?"""
    fields = _ANSWER_FIELDS[operation]
    if not all(isinstance(answer.get(name), kind) for name, kind in fields.items()):
        return False
    if operation == "DescribeKey":
        return isinstance(answer["KeyMetadata"].get("Arn"), str)  # type: ignore[union-attr]
    return True
