"""Data keys from AWS KMS (GenerateDataKey / Decrypt), through aioboto3, with a cache of unwrapped keys for reads,
retries within a deadline and a circuit breaker (the policies are pure code: cache.py, retry.py, breaker.py).

Plaintext data keys are never logged and never put in an exception; cached ones are zeroed when they leave the
cache, and callers that only need derived keys use `open_keys`, which zeroes its copy.
botocore exceptions are translated here, at the boundary, into the gateway's error tree.
"""
from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, TypeVar

import aioboto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from gateway import errors
from gateway.format.bucketkey import SCHEME_BUCKET_KEY, BucketKeyBlob, bucket_key_context, derive_dek
from gateway.format.envelope import ENCRYPTION_CONTEXT_BUCKET, ENCRYPTION_CONTEXT_KEY, Header, WrappedKey
from gateway.keys.breaker import CLOSED, Breaker
from gateway.keys.bucketkeys import BucketKeys
from gateway.keys.cache import EVICTION_REASONS, CacheKey, CacheLimits, DekCache, cache_key, zero
from gateway.keys.retry import RetryPolicy
from gateway.observability.logs import audit
from gateway.observability.metrics import Metrics

KMS_SCHEME = "kms"
_KMS_SCHEMES = (KMS_SCHEME, SCHEME_BUCKET_KEY)
T = TypeVar("T")

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
# How often expired cached keys are zeroed even when no request touches the cache.
_SWEEP_INTERVAL_SECONDS = 1.0


class _Retryable(Exception):
    """An attempt failed in a way another attempt may not: carries the error to answer if none is left."""

    def __init__(self, error: errors.S3Error) -> None:
        super().__init__(error.code)
        self.error = error


class KeyService:
    def __init__(self, key_id: str, metrics: Metrics, *, endpoint_url: str | None = None, region: str | None = None,
                 session: aioboto3.Session | None = None, cache: CacheLimits, retry: RetryPolicy, breaker: Breaker,
                 jitter: Callable[[], float] = random.random, bucket_keys: BucketKeys | None = None) -> None:
        self._key_id = key_id
        self._bucket_keys = bucket_keys
        self._metrics = metrics
        self._endpoint_url = endpoint_url
        self._region = region
        self._session = session or aioboto3.Session()
        self._stack = AsyncExitStack()
        self._client: Any = None
        self._trusted_arn: str | None = None
        self._retry = retry
        self._breaker = breaker
        self._jitter = jitter
        self._cache = DekCache(cache, on_evict=lambda reason: metrics.dek_cache_evictions.labels(reason).inc())
        # Single flight: concurrent misses for one wrapped key share one Decrypt instead of stampeding KMS.
        self._inflight: dict[CacheKey, asyncio.Future[bytes]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        for reason in EVICTION_REASONS:
            metrics.dek_cache_evictions.labels(reason)

    async def start(self) -> None:
        # Retries are ours (retry.py: a deadline, the breaker); botocore makes exactly one attempt per call.
        config = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=10)
        self._client = await self._stack.enter_async_context(
            self._session.client("kms", endpoint_url=self._endpoint_url, region_name=self._region, config=config))
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        self._cache.clear()
        self._cache_changed()
        if self._bucket_keys is not None:
            self._bucket_keys.close()
        await self._stack.aclose()

    async def generate(self, context: Mapping[str, str], principal: str) -> tuple[bytes, WrappedKey]:
        """A fresh AES-256 data key: (plaintext, wrapped copy). Never cached: it serves one write. In a bucket-key
        bucket the DEK is derived from the bucket's current bucket key (one KMS call per bucket key)."""
        bucket = context.get(ENCRYPTION_CONTEXT_BUCKET)  # the readiness probe's context names no bucket
        if self._bucket_keys is not None and bucket is not None and self._bucket_keys.applies(bucket):
            return await self._bucket_keys.issue(bucket, context[ENCRYPTION_CONTEXT_KEY],
                                                 lambda: self._new_bucket_key(bucket, principal))
        response = await self._call("GenerateDataKey", _Audit(principal, context, self._key_id), KeyId=self._key_id,
                                    KeySpec="AES_256", EncryptionContext=dict(context))
        return response["Plaintext"], WrappedKey(KMS_SCHEME, response["KeyId"], response["CiphertextBlob"])

    async def _new_bucket_key(self, bucket: str, principal: str) -> tuple[bytes, bytes, str]:
        context = bucket_key_context(bucket)
        response = await self._call("GenerateDataKey", _Audit(principal, context, self._key_id), KeyId=self._key_id,
                                    KeySpec="AES_256", EncryptionContext=context)
        return response["Plaintext"], response["CiphertextBlob"], response["KeyId"]

    async def open_keys(self, opener: Callable[[bytearray, Header], T], header: Header, wrapped: list[WrappedKey],
                        context: Mapping[str, str], principal: str) -> T:
        """`opener(dek, header)` (open_object_key, open_multipart_keys) on the unwrapped data key, which is zeroed
        afterwards: callers keep only the derived keys."""
        dek = await self.unwrap(wrapped, context, principal)
        try:
            return opener(dek, header)
        finally:
            zero(dek)

    async def unwrap(self, wrapped: list[WrappedKey], context: Mapping[str, str], principal: str, *,
                     use_cache: bool = True) -> bytearray:
        """The plaintext data key (a copy the caller owns), unwrapped by the configured KMS key only; from the cache
        when this wrapped key was unwrapped for this context less than the cache's TTL ago.

        The key id in the object's metadata is not trusted on its own: whoever can write to the store could
        plant an object wrapped under a KMS key of theirs, with this object's name as context. Only copies
        wrapped by the configured key are sent to KMS, and with its ARN pinned.
        """
        trusted, copy = await self._trusted_copy("Decrypt", wrapped, context, principal)
        if copy.scheme != SCHEME_BUCKET_KEY:
            return await self._cached_decrypt(trusted, copy.blob, context, context, principal, use_cache)
        # FORMAT.md §16: the bucket key (cached under its own context, so one Decrypt serves every object of that
        # bucket key), then this object's DEK derived from it with the name being read.
        entry = BucketKeyBlob.decode(copy.blob)
        bucket = context[ENCRYPTION_CONTEXT_BUCKET]
        bucket_key = await self._cached_decrypt(trusted, entry.wrapped_bucket_key, bucket_key_context(bucket),
                                                context, principal, use_cache)
        try:
            return bytearray(derive_dek(bucket_key, entry.salt, bucket, context[ENCRYPTION_CONTEXT_KEY]))
        finally:
            zero(bucket_key)

    async def _cached_decrypt(self, trusted: str, blob: bytes, kms_context: Mapping[str, str],
                              object_context: Mapping[str, str], principal: str, use_cache: bool) -> bytearray:
        """KMS Decrypt of blob under kms_context, through the cache; audited for the object being read."""
        if not use_cache:
            return bytearray(await self._decrypt(trusted, blob, kms_context, object_context, principal))
        key = cache_key(trusted, blob, kms_context)
        dek = self._cache.get(key, time.monotonic())
        self._cache_changed()
        if dek is not None:
            self._metrics.dek_cache_hits.inc()
            audit("CacheHit", "ok", principal=principal, **_object(object_context), kms_key_id=trusted)
            return dek
        self._metrics.dek_cache_misses.inc()
        flight = self._inflight.get(key)
        if flight is not None:
            plaintext = await asyncio.shield(flight)
            audit("CacheHit", "joined", principal=principal, **_object(object_context), kms_key_id=trusted)
            return bytearray(plaintext)
        # A task of its own: a cancelled first requester must not fail the others waiting for the same key.
        flight = asyncio.ensure_future(self._fill(key, trusted, blob, kms_context, object_context, principal))
        self._inflight[key] = flight
        flight.add_done_callback(lambda done: self._landed(key, done))
        return bytearray(await asyncio.shield(flight))

    async def _fill(self, key: CacheKey, trusted: str, blob: bytes, kms_context: Mapping[str, str],
                    object_context: Mapping[str, str], principal: str) -> bytes:
        plaintext = await self._decrypt(trusted, blob, kms_context, object_context, principal)
        self._cache.put(key, bytearray(plaintext), time.monotonic())
        self._cache_changed()
        return plaintext

    def _landed(self, key: CacheKey, flight: asyncio.Future[bytes]) -> None:
        if self._inflight.get(key) is flight:
            del self._inflight[key]
        if not flight.cancelled():
            flight.exception()  # retrieved here: every waiter may have gone, which is no error of ours

    async def _decrypt(self, trusted: str, blob: bytes, kms_context: Mapping[str, str],
                       object_context: Mapping[str, str], principal: str) -> bytes:
        response = await self._call("Decrypt", _Audit(principal, object_context, trusted), CiphertextBlob=blob,
                                    KeyId=trusted, EncryptionContext=dict(kms_context))
        return response["Plaintext"]

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(_SWEEP_INTERVAL_SECONDS)
            self._cache.sweep(time.monotonic())
            self._cache_changed()

    def _cache_changed(self) -> None:
        self._metrics.dek_cache_entries.set(len(self._cache))
        self._metrics.dek_cache_bytes.set(self._cache.size_bytes)

    async def rewrap(self, wrapped: list[WrappedKey], source: Mapping[str, str], destination: Mapping[str, str],
                     principal: str) -> WrappedKey:
        """The data key wrapped for another encryption context (a copy under a new name), by KMS ReEncrypt:
        the plaintext key never leaves KMS. Only a copy wrapped by the configured key is accepted (see unwrap).
        A bucket-key DEK is bound to its object's name by derivation (FORMAT.md §16), so its copy gets a `kms`
        entry instead: KMS Encrypt of the DEK under the destination's context."""
        trusted, copy = await self._trusted_copy("ReEncrypt", wrapped, source, principal)
        if copy.scheme == SCHEME_BUCKET_KEY:
            dek = await self.unwrap([copy], source, principal)
            try:
                response = await self._call("Encrypt", _Audit(principal, destination, self._key_id),
                                            KeyId=self._key_id, Plaintext=bytes(dek),
                                            EncryptionContext=dict(destination))
            finally:
                zero(dek)
            return WrappedKey(KMS_SCHEME, response["KeyId"], response["CiphertextBlob"])
        response = await self._call("ReEncrypt", _Audit(principal, destination, trusted),
                                    CiphertextBlob=copy.blob, SourceKeyId=trusted,
                                    SourceEncryptionContext=dict(source), DestinationKeyId=self._key_id,
                                    DestinationEncryptionContext=dict(destination))
        return WrappedKey(KMS_SCHEME, response["KeyId"], response["CiphertextBlob"])

    async def _trusted_copy(self, operation: str, wrapped: list[WrappedKey], context: Mapping[str, str],
                            principal: str) -> tuple[str, WrappedKey]:
        """(configured key ARN, the first copy it wrapped — scheme `kms` or `kms-bucket-key`); refused (and
        audited) if none."""
        trusted = await self.trusted_arn()
        usable = [w for w in wrapped if w.scheme in _KMS_SCHEMES and w.key_id == trusted]
        if not usable:
            audit(operation, "untrusted_key", principal=principal, **_object(context),
                  kms_key_id=[w.key_id for w in wrapped])
            raise errors.UnsupportedFormat("The object's data key is not wrapped by this gateway's KMS key.")
        return trusted, usable[0]

    async def trusted_arn(self) -> str:
        """The ARN of the configured key (which may be given as an alias), resolved once."""
        if self._trusted_arn is None:
            response = await self._call("DescribeKey", None, KeyId=self._key_id)
            self._trusted_arn = response["KeyMetadata"]["Arn"]
        return self._trusted_arn

    async def _call(self, operation: str, audited: _Audit | None, **params: Any) -> dict[str, Any]:
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
                    audit(operation, "breaker_open", principal=audited.principal, **_object(audited.context),
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

    async def _attempt(self, operation: str, audited: _Audit | None, timeout_seconds: float,
                       params: dict[str, Any]) -> dict[str, Any]:
        method = {"GenerateDataKey": self._client.generate_data_key, "Decrypt": self._client.decrypt,
                  "Encrypt": self._client.encrypt, "ReEncrypt": self._client.re_encrypt, "DescribeKey": self._client.describe_key}[operation]
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
                audit(operation, outcome, principal=audited.principal, **_object(audited.context),
                      kms_key_id=audited.kms_key_id)

    def _breaker_changed(self) -> None:
        self._metrics.kms_breaker_open.set(0 if self._breaker.state == CLOSED else 1)


@dataclass(frozen=True)
class _Audit:
    """Who asked for a key operation on which object: what the audit log records (never key material)."""
    principal: str
    context: Mapping[str, str]
    kms_key_id: str


def _object(context: Mapping[str, str]) -> dict[str, str | None]:
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
