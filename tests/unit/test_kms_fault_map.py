"""The KMS fault map (gateway.keys.faults), entry by entry, and a KMS endpoint driven by a scripted client: which
faults are retried, which the circuit breaker counts, and what the client finally gets. No network."""
from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pytest
from botocore.exceptions import (ClientError, ConnectionClosedError, ConnectTimeoutError, CredentialRetrievalError,
                                 EndpointConnectionError, HTTPClientError, NoCredentialsError, ParamValidationError,
                                 ReadTimeoutError, SSLError)
from botocore.parsers import ResponseParserError

from gateway import errors
from gateway.keys import faults
from gateway.keys.breaker import CLOSED, OPEN, Breaker
from gateway.keys.endpoint import KmsEndpoint, kms_error
from gateway.keys.retry import RetryPolicy
from gateway.observability.metrics import Metrics

FAILING = ("kms_failure", True, True, "KMS.ServiceUnavailable", 503)
THROTTLED = ("throttled", True, False, "SlowDown", 503)
DENIED = ("denied", False, False, "KMS.AccessDeniedException", 403)


# (code, HTTP status KMS answers it with) -> (outcome, retryable, counted by the breaker, S3 code, S3 status)
@pytest.mark.parametrize("code, status, expected", [
    ("KMSInternalException", 500, FAILING),
    ("InternalFailure", 500, FAILING),
    ("InternalError", 500, FAILING),
    ("ServiceUnavailable", 503, FAILING),
    ("ServiceUnavailableException", 503, FAILING),
    ("DependencyTimeoutException", 503, FAILING),
    ("KeyUnavailableException", 500, FAILING),
    ("ThrottlingException", 400, THROTTLED),
    ("Throttling", 400, THROTTLED),
    ("TooManyRequestsException", 429, THROTTLED),
    ("RequestLimitExceeded", 400, THROTTLED),
    ("LimitExceededException", 400, THROTTLED),
    ("DisabledException", 400, ("key_unusable", False, False, "KMS.DisabledException", 403)),
    ("KMSInvalidStateException", 400, ("key_unusable", False, False, "KMS.KMSInvalidStateException", 403)),
    ("InvalidKeyUsageException", 400, ("key_unusable", False, False, "KMS.KMSInvalidStateException", 403)),
    ("NotFoundException", 400, ("key_unusable", False, False, "KMS.NotFoundException", 403)),
    ("AccessDeniedException", 400, DENIED),
    ("UnauthorizedException", 400, DENIED),
    ("UnrecognizedClientException", 400, DENIED),
    ("InvalidSignatureException", 400, DENIED),
    ("IncompleteSignature", 400, DENIED),
    ("MissingAuthenticationToken", 403, DENIED),
    ("ExpiredTokenException", 400, DENIED),
    ("InvalidCiphertextException", 400, ("invalid_ciphertext", False, False, "InternalError", 500)),
    ("IncorrectKeyException", 400, ("invalid_ciphertext", False, False, "InternalError", 500)),
    # Unknown codes, by status: a 5xx or 429 may pass (botocore's rule), anything else is a request the gateway
    # should not have sent.
    ("502", 502, FAILING),
    ("504", 504, FAILING),
    ("SomethingNew", 500, FAILING),
    ("SlowDownPlease", 429, THROTTLED),
    ("ValidationException", 400, ("error", False, False, "KMS.InternalError", 500)),
    ("InvalidArnException", 400, ("error", False, False, "KMS.InternalError", 500)),
    ("", None, ("error", False, False, "KMS.InternalError", 500)),
])
def test_every_kms_answer_is_classified(code, status, expected):
    fault = faults.for_answer(code, status)
    error = fault.error()
    assert (fault.outcome, fault.retryable, fault.kms_failing, error.code, error.status) == expected
    # A fault that may pass lets a read try the other region; a final answer never does.
    assert isinstance(error, faults.REGION_FAULTS) == fault.retryable


def test_every_mapped_code_is_in_the_table_test():
    tested = {"KMSInternalException", "InternalFailure", "InternalError", "ServiceUnavailable",
              "ServiceUnavailableException", "DependencyTimeoutException", "KeyUnavailableException",
              "ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded",
              "LimitExceededException", "DisabledException", "KMSInvalidStateException", "InvalidKeyUsageException",
              "NotFoundException", "AccessDeniedException", "UnauthorizedException", "UnrecognizedClientException",
              "InvalidSignatureException", "IncompleteSignature", "MissingAuthenticationToken",
              "ExpiredTokenException", "InvalidCiphertextException", "IncorrectKeyException"}
    assert set(faults.BY_CODE) == tested


def test_the_offline_tools_get_the_same_errors():
    assert kms_error("ServiceUnavailable").code == "KMS.ServiceUnavailable"
    assert kms_error("DisabledException").status == 403


@pytest.mark.parametrize("exc, outcome", [
    (EndpointConnectionError(endpoint_url="http://kms"), "unreachable"),  # connection refused, DNS
    (ConnectionClosedError(endpoint_url="http://kms"), "unreachable"),  # reset, closed mid-answer
    (SSLError(endpoint_url="http://kms", error="bad certificate"), "unreachable"),
    (HTTPClientError(error="anything else aiohttp raised"), "unreachable"),
    (ConnectionResetError(), "unreachable"),
    (ssl.SSLError(), "unreachable"),
    (NoCredentialsError(), "unreachable"),
    (CredentialRetrievalError(provider="imds", error_msg="timeout"), "unreachable"),
    (ReadTimeoutError(endpoint_url="http://kms"), "timeout"),
    (ConnectTimeoutError(endpoint_url="http://kms"), "timeout"),
    (TimeoutError(), "timeout"),  # our own deadline cut the attempt off
    (asyncio.TimeoutError(), "timeout"),
    (ResponseParserError("not JSON"), "bad_answer"),
])
def test_calls_without_an_answer_are_kms_failing(exc, outcome):
    fault = faults.for_exception(exc)
    assert fault is not None
    assert (fault.outcome, fault.retryable, fault.kms_failing) == (outcome, True, True)
    assert isinstance(fault.error(), errors.KMSUnavailable) and fault.error().status == 503


def test_parameters_botocore_refuses_are_a_gateway_bug_and_other_exceptions_propagate():
    fault = faults.for_exception(ParamValidationError(report="KeyId missing"))
    assert fault is not None and (fault.retryable, fault.error().status) == (False, 500)
    assert faults.for_exception(KeyError("Plaintext")) is None
    assert faults.for_exception(asyncio.CancelledError()) is None


@pytest.mark.parametrize("operation, answer, complete", [
    ("Decrypt", {"KeyId": "arn", "Plaintext": b"k" * 32}, True),
    ("Decrypt", {}, False),  # a 200 that is not KMS's JSON parses as nothing
    ("Decrypt", {"KeyId": "arn", "Plaintext": "not bytes"}, False),
    ("GenerateDataKey", {"KeyId": "arn", "Plaintext": b"k", "CiphertextBlob": b"c"}, True),
    ("GenerateDataKey", {"KeyId": "arn", "Plaintext": b"k"}, False),
    ("Encrypt", {"KeyId": "arn", "CiphertextBlob": b"c"}, True),
    ("Encrypt", {"CiphertextBlob": b"c"}, False),
    ("ReEncrypt", {"KeyId": "arn", "CiphertextBlob": b"c"}, True),
    ("ReEncrypt", {"KeyId": "arn"}, False),
    ("DescribeKey", {"KeyMetadata": {"Arn": "arn"}}, True),
    ("DescribeKey", {"KeyMetadata": {}}, False),
    ("DescribeKey", {"KeyMetadata": "arn"}, False),
])
def test_an_answer_must_carry_what_the_gateway_reads(operation, answer, complete):
    assert faults.complete(operation, answer) is complete


# --- an endpoint driven by a scripted client ---------------------------------------------------------------------

def _client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "echo: secret request field"},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "Decrypt")


class _Script:
    """A KMS client whose Decrypt plays the given outcomes in turn (an exception is raised, a dict answered)."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    async def decrypt(self, **params: Any) -> dict[str, Any]:
        self.calls += 1
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def _endpoint(script: _Script, breaker: Breaker, metrics: Metrics, deadline: float = 1.0) -> KmsEndpoint:
    endpoint = KmsEndpoint(metrics, endpoint_url="http://kms.invalid", region="us-east-1", session=None,
                           retry=RetryPolicy(deadline, 0.001, 0.002, min_attempt_seconds=0.01), breaker=breaker,
                           jitter=lambda: 0.5)
    endpoint._client = script  # noqa: SLF001 (the client the endpoint would have built)
    return endpoint


def _sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


OK = {"KeyId": "arn", "Plaintext": b"k" * 32}


@pytest.mark.parametrize("failure", [
    _client_error("ServiceUnavailable", 503),
    _client_error("InternalFailure", 500),
    _client_error("502", 502),
    EndpointConnectionError(endpoint_url="http://kms"),
    {},  # an answer that is not KMS's
])
def test_kms_failing_is_retried_and_counted_by_the_breaker(failure):
    script, metrics, breaker = _Script(failure, failure, OK), Metrics(), Breaker(10, 60)
    answer = asyncio.run(_endpoint(script, breaker, metrics).call("Decrypt", None, CiphertextBlob=b"c"))
    assert answer == OK and script.calls == 3
    assert _sample(metrics, "envelope_kms_retries_total", operation="Decrypt") == 2
    assert breaker.state == CLOSED
    script, breaker = _Script(failure), Breaker(2, 60)
    with pytest.raises(errors.KMSUnavailable) as err:
        asyncio.run(_endpoint(script, breaker, Metrics()).call("Decrypt", None, CiphertextBlob=b"c"))
    assert breaker.state == OPEN  # every failure counted
    assert "secret" not in str(err.value)
    assert err.value.__cause__ is None and (err.value.__context__ is None or err.value.__suppress_context__)


def test_throttling_is_retried_not_counted_and_ends_as_slowdown():
    script, breaker = _Script(_client_error("ThrottlingException", 400)), Breaker(2, 60)
    with pytest.raises(errors.SlowDown):
        asyncio.run(_endpoint(script, breaker, Metrics(), deadline=0.3).call("Decrypt", None, CiphertextBlob=b"c"))
    assert script.calls > 2 and breaker.state != OPEN


@pytest.mark.parametrize("code, error", [
    ("DisabledException", errors.KMSKeyDisabled),
    ("AccessDeniedException", errors.KMSAccessDenied),
    ("InvalidCiphertextException", errors.TamperedCiphertext),
    ("ValidationException", errors.KMSError),
])
def test_final_answers_are_not_retried(code, error):
    script, metrics = _Script(_client_error(code, 400)), Metrics()
    with pytest.raises(error):
        asyncio.run(_endpoint(script, Breaker(1, 60), metrics).call("Decrypt", None, CiphertextBlob=b"c"))
    assert script.calls == 1
    assert _sample(metrics, "envelope_kms_retries_total", operation="Decrypt") == 0


def test_an_unknown_exception_is_not_swallowed():
    script = _Script(KeyError("a gateway bug"))
    with pytest.raises(KeyError):
        asyncio.run(_endpoint(script, Breaker(1, 60), Metrics()).call("Decrypt", None, CiphertextBlob=b"c"))
