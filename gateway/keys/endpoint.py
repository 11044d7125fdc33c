"""One KMS endpoint (a region) as the gateway calls it: its aioboto3 client, retries with jittered backoff within
a deadline, a circuit breaker, and the translation of KMS errors into the gateway's error tree (by the fault map in
gateway.keys.faults, with fixed messages: KMS errors can echo request fields). Every call is counted, timed and
audited.

Who retries: this module, and only it. botocore's own retries are off (one attempt per call): its standard mode
would retry the same 5xx, throttling and connection faults up to three times inside one of our attempts, so an
attempt could outlive the deadline's arithmetic, and the breaker and the metrics would see one failure where KMS
was called three times.
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
from botocore.exceptions import ClientError

from gateway import errors
from gateway.keys import faults
from gateway.keys.breaker import CLOSED, Breaker
from gateway.keys.retry import RetryPolicy
from gateway.observability.logs import audit
from gateway.observability.metrics import Metrics, package_version

_METHODS = {"GenerateDataKey": "generate_data_key", "Decrypt": "decrypt", "Encrypt": "encrypt",
            "ReEncrypt": "re_encrypt", "DescribeKey": "describe_key"}
USER_AGENT = (f"envelope-gateway/{package_version()} aiobotocore/{aiobotocore.__version__} "
              f"botocore/{botocore.__version__}")


class _Faulted(Exception):
    """An attempt went wrong: how, by the fault map."""

    def __init__(self, fault: faults.Fault) -> None:
        super().__init__(fault.outcome)
        self.fault = fault


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
        # Retries are ours (retry.py: a deadline, the breaker; see the module's docstring); botocore makes exactly one
        # attempt per call.
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
        started = time.perf_counter()
        outcome = "cancelled"
        answered: bool | None = None  # for the breaker: KMS answered (True), failed (False), or no verdict
        try:
            response = await self._send(operation, timeout_seconds, params)
            outcome, answered = "ok", True
            return response
        except _Faulted as faulted:
            fault = faulted.fault
            outcome, answered = fault.outcome, not fault.kms_failing
            # `from None`: KMS errors and botocore's exceptions can echo request fields; none of it is shown.
            if fault.retryable:
                raise _Retryable(fault.error()) from None
            raise fault.error() from None
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

    async def _send(self, operation: str, timeout_seconds: float, params: dict[str, Any]) -> dict[str, Any]:
        """One request to KMS: its answer, or _Faulted with the fault map's verdict on how it went wrong."""
        method = getattr(self._client, _METHODS[operation])
        try:
            async with asyncio.timeout(timeout_seconds):  # its expiry is a TimeoutError: a timed-out attempt
                response: dict[str, Any] = await method(**params)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            raise _Faulted(faults.for_answer(code, exc.response.get("ResponseMetadata", {})
                                             .get("HTTPStatusCode"))) from None
        except Exception as exc:
            fault = faults.for_exception(exc)
            if fault is None:
                raise  # not a KMS fault but a gateway bug: the edge answers 500
            raise _Faulted(fault) from None
        if not faults.complete(operation, response):
            raise _Faulted(faults.BAD_ANSWER)
        return response

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


def kms_error(code: str) -> errors.S3Error:
    """The gateway's error for a KMS error code, from the fault map (also used by the offline tools in
    gateway.tools)."""
    return faults.for_answer(code, None).error()
