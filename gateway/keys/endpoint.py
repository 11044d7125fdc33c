"""One KMS endpoint (a region) as the gateway calls it: its aioboto3 client, retries with jittered backoff within
a deadline, a circuit breaker, and the translation of KMS errors into the gateway's error tree (at this boundary,
with fixed messages: KMS errors can echo request fields). Every call is counted, timed and audited.
"""
from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import aioboto3
import aiobotocore
import botocore
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from gateway import errors
from gateway.keys.breaker import CLOSED, Breaker
from gateway.keys.retry import RetryPolicy
from gateway.observability.logs import audit
from gateway.observability.metrics import Metrics, package_version

# KMS error codes that mean "this ciphertext/context pair is not what was stored": the wrapped key or its
# encryption context (bucket, key) does not match, e.g. an object copied or swapped around the gateway.
_INTEGRITY_CODES = {"InvalidCiphertextException", "IncorrectKeyException"}
_DENIED_CODES = {"AccessDeniedException", "UnauthorizedException"}
_THROTTLE_CODES = {"ThrottlingException", "LimitExceededException"}
# The master key itself is unusable: revoked by an operator, not a fault of KMS.
_UNUSABLE_CODES = {"DisabledException", "KMSInvalidStateException", "NotFoundException"}
# KMS's own failures: retried, and counted by the circuit breaker like no answer at all.
_FAILURE_CODES = {"KMSInternalException", "DependencyTimeoutException"}
_RETRYABLE_CODES = _THROTTLE_CODES | _FAILURE_CODES
USER_AGENT = (f"envelope-gateway/{package_version()} aiobotocore/{aiobotocore.__version__} "
              f"botocore/{botocore.__version__}")


class _Retryable(Exception):
    """An attempt failed in a way another attempt may not: carries the error to answer if none is left."""

    def __init__(self, error: errors.S3Error) -> None:
        super().__init__(error.code)
        self.error = error


class KmsEndpoint:
    def __init__(self, metrics: Metrics, *, endpoint_url: str | None, region: str | None,
                 session: aioboto3.Session | None, retry: RetryPolicy, breaker: Breaker,
                 jitter: Callable[[], float] = random.random, reports_breaker: bool = True) -> None:
        self._metrics = metrics
        self._endpoint_url = endpoint_url
        self._region = region
        self._session = session or aioboto3.Session()
        self._stack = AsyncExitStack()
        self._client: Any = None
        self._retry = retry
        self._breaker = breaker
        self._jitter = jitter
        self._reports_breaker = reports_breaker  # the gauge describes the primary endpoint

    async def start(self) -> None:
        # Retries are ours (retry.py: a deadline, the breaker); botocore makes exactly one attempt per call.
        # A fixed User-Agent names the gateway in KMS's logs (CloudTrail's userAgent) and spares botocore rebuilding
        # its feature-tracking one twice per call: ~0.1 ms of CPU on every KMS call of a small PUT (profile-4KiB.md).
        config = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=10,
                        user_agent=USER_AGENT)
        self._client = await self._stack.enter_async_context(
            self._session.client("kms", endpoint_url=self._endpoint_url, region_name=self._region, config=config))

    async def close(self) -> None:
        await self._stack.aclose()

    async def call(self, operation: str, audited: Audit | None, **params: Any) -> dict[str, Any]:
        """One key operation: attempts while the retry policy's deadline allows and the breaker lets them through.
        Throttling past the deadline is SlowDown (503); no answer, or KMS failing, is KMS.ServiceUnavailable."""
        started = time.monotonic()
        failures = 0
        throttled: errors.S3Error | None = None  # once throttled, running out of time is SlowDown, whatever came last
        while True:
            if not self._breaker.allow(time.monotonic()):
                self._metrics.kms_breaker_rejections.labels(operation).inc()
                self._breaker_changed()
                if audited is not None:
                    audit(operation, "breaker_open", principal=audited.principal, **audited_object(audited.context),
                          kms_key_id=audited.kms_key_id)
                raise errors.KMSUnavailable("The key management service is failing; the gateway is not calling it "
                                            "for a few seconds. Please try again.")
            try:
                return await self._attempt(operation, audited, self._retry.remaining(started, time.monotonic()),
                                           params)
            except _Retryable as failed:
                failures += 1
                if isinstance(failed.error, errors.SlowDown):
                    throttled = failed.error
                wait = self._retry.delay(failures, started, time.monotonic(), self._jitter)
                if wait is None:
                    raise (throttled or failed.error) from None
                self._metrics.kms_retries.labels(operation).inc()
                await asyncio.sleep(wait)

    async def _attempt(self, operation: str, audited: Audit | None, timeout_seconds: float,
                       params: dict[str, Any]) -> dict[str, Any]:
        method = {"GenerateDataKey": self._client.generate_data_key, "Decrypt": self._client.decrypt,
                  "Encrypt": self._client.encrypt, "ReEncrypt": self._client.re_encrypt,
                  "DescribeKey": self._client.describe_key}[operation]
        started = time.perf_counter()
        outcome = "cancelled"
        answered: bool | None = None  # for the breaker: KMS answered (True), failed (False), or no verdict
        try:
            async with asyncio.timeout(timeout_seconds):
                response = await method(**params)
            outcome, answered = "ok", True
            return response
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "Unknown")
            outcome, answered = _outcome(code), code not in _FAILURE_CODES
            if code in _RETRYABLE_CODES:
                raise _Retryable(kms_error(code)) from None
            raise kms_error(code) from None
        except (BotoCoreError, OSError):  # OSError includes TimeoutError: the deadline passed during the call
            outcome, answered = "unreachable", False
            raise _Retryable(errors.KMSUnavailable("The key management service is unreachable.")) from None
        finally:
            if answered is None:
                self._breaker.abandon()
            elif answered:
                self._breaker.success()
            else:
                self._breaker.failure(time.monotonic())
            self._breaker_changed()
            self._metrics.kms_duration.labels(operation).observe(time.perf_counter() - started)
            self._metrics.kms_requests.labels(operation, outcome).inc()
            if audited is not None:
                audit(operation, outcome, principal=audited.principal, **audited_object(audited.context),
                      kms_key_id=audited.kms_key_id)

    def _breaker_changed(self) -> None:
        if self._reports_breaker:
            self._metrics.kms_breaker_open.set(0 if self._breaker.state == CLOSED else 1)


@dataclass(frozen=True)
class Audit:
    """Who asked for a key operation on which object: what the audit log records (never key material)."""
    principal: str
    context: Mapping[str, str]
    kms_key_id: str


def audited_object(context: Mapping[str, str]) -> dict[str, str | None]:
    return {"bucket": context.get("envelope-gateway:bucket"), "key": context.get("envelope-gateway:key")}


def _outcome(code: str) -> str:
    if code in _INTEGRITY_CODES:
        return "invalid_ciphertext"
    if code in _DENIED_CODES:
        return "denied"
    if code in _THROTTLE_CODES:
        return "throttled"
    if code in _UNUSABLE_CODES:
        return "key_unusable"
    return "error"


def kms_error(code: str) -> errors.S3Error:
    """The gateway's error for a KMS error code (also used by the offline tools in gateway.tools)."""
    # `from None` at the callers and fixed messages here: KMS errors can echo request fields; none of it is shown.
    if code in _INTEGRITY_CODES:
        return errors.TamperedCiphertext(
            "The object's data key does not belong to this bucket and key (copied or swapped outside the gateway?).")
    if code in _DENIED_CODES:
        return errors.KMSAccessDenied()
    if code in _THROTTLE_CODES:
        return errors.SlowDown("The key management service is throttling requests.")
    if code == "DisabledException":
        return errors.KMSKeyDisabled()
    if code == "KMSInvalidStateException":
        return errors.KMSKeyInvalidState()
    if code == "NotFoundException":
        return errors.KMSKeyNotFound()
    if code in _FAILURE_CODES or code == "KeyUnavailableException":
        return errors.KMSUnavailable()
    return errors.KMSError()
