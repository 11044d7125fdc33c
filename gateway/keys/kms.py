"""Data keys from AWS KMS (GenerateDataKey / Decrypt) for the gateway: which master key writes which object (the key
policy), which keys reading accepts, a cache of unwrapped keys for reads, bucket keys, and an optional second KMS
key (another region) that every new data key is also wrapped under and reads fall back to.

Plaintext data keys are never logged and never put in an exception; cached ones are zeroed when they leave the
cache, and callers that only need derived keys use `open_keys`, which zeroes its copy. The calls themselves —
retries, circuit breaker, error translation — are gateway.keys.endpoint's.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from gateway import errors
from gateway.format.bucketkey import SCHEME_BUCKET_KEY, BucketKeyBlob, bucket_key_context, derive_dek
from gateway.format.envelope import ENCRYPTION_CONTEXT_BUCKET, ENCRYPTION_CONTEXT_KEY, Header, WrappedKey
from gateway.keys.bucketkeys import BucketKeys
from gateway.keys.cache import EVICTION_REASONS, CacheKey, CacheLimits, DekCache, cache_key, zero
from gateway.keys.endpoint import Audit, KmsEndpoint, audited_object
from gateway.keys.faults import REGION_FAULTS
from gateway.keys.policy import MasterKeyPolicy
from gateway.observability.logs import audit
from gateway.observability.metrics import Metrics

log = logging.getLogger(__name__)
KMS_SCHEME = "kms"
_KMS_SCHEMES = (KMS_SCHEME, SCHEME_BUCKET_KEY)
T = TypeVar("T")
# How often expired cached keys are zeroed even when no request touches the cache.
_SWEEP_INTERVAL_SECONDS = 1.0
# How long the readiness probe waits for the first region before it asks the second one as well.
_PROBE_HEDGE_SECONDS = 1.0
# A configured key id that is already a key ARN needs no DescribeKey to be trusted (an alias or a bare id does).
_KEY_ARN = re.compile(r"arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+")


@dataclass(frozen=True)
class Secondary:
    """The second KMS key and the endpoint that serves it."""
    key_id: str
    endpoint: KmsEndpoint


class KeyService:
    def __init__(self, policy: MasterKeyPolicy, metrics: Metrics, primary: KmsEndpoint, *, cache: CacheLimits,
                 decrypt_key_ids: tuple[str, ...] = (), secondary: Secondary | None = None,
                 bucket_keys: BucketKeys | None = None, cache_new_keys: bool = True) -> None:
        self._policy = policy
        self._cache_new_keys = cache_new_keys
        self._metrics = metrics
        self._primary = primary
        self._secondary = secondary
        self._decrypt_key_ids = decrypt_key_ids
        self._bucket_keys = bucket_keys
        # Configured key id (alias, id or ARN) → key ARN, resolved once each, each on its own region's KMS.
        self._arns: dict[str, str] = {}
        self._secondary_arn: str | None = None
        self._cache = DekCache(cache, on_evict=lambda reason: metrics.dek_cache_evictions.labels(reason).inc())
        # Single flight: concurrent misses for one wrapped key share one Decrypt instead of stampeding KMS.
        self._inflight: dict[CacheKey, asyncio.Future[bytes]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        for reason in EVICTION_REASONS:
            metrics.dek_cache_evictions.labels(reason)

    async def start(self) -> None:
        await self._primary.start()
        if self._secondary is not None:
            await self._secondary.endpoint.start()
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
        await self._primary.close()
        if self._secondary is not None:
            await self._secondary.endpoint.close()

    # --- writing --------------------------------------------------------------------------------------------------
    async def generate(self, context: Mapping[str, str], principal: str) -> tuple[bytes, list[WrappedKey]]:
        """A fresh AES-256 data key and its wrapped copies: one under the master key the policy names for the object
        (in a bucket-key bucket, derived from the bucket key: no KMS call but one per bucket key), and one under the
        second KMS key if there is one. The key is also cached for reading (unless `kms.cache.write_through` is off):
        an object read back soon after it was written then needs no KMS Decrypt, as if it had been read before."""
        bucket, key = context[ENCRYPTION_CONTEXT_BUCKET], context[ENCRYPTION_CONTEXT_KEY]
        key_id = self._policy.key_for(bucket, key)
        if self._bucket_keys is not None and self._bucket_keys.applies(bucket):
            return await self._bucket_keys.issue(bucket, key, key_id,
                                                 lambda: self._new_bucket_key(bucket, key_id, principal))
        response = await self._primary.call("GenerateDataKey", Audit(principal, context, key_id), KeyId=key_id,
                                            KeySpec="AES_256", EncryptionContext=dict(context))
        self._learn_arn(key_id, response["KeyId"])
        dek = response["Plaintext"]
        wrapped = WrappedKey(KMS_SCHEME, response["KeyId"], response["CiphertextBlob"])
        copies = [wrapped, *await self._secondary_copy(dek, context, principal)]
        self._remember(wrapped.key_id, wrapped.blob, context, dek)
        return dek, copies

    async def _new_bucket_key(self, bucket: str, key_id: str, principal: str
                              ) -> tuple[bytes, list[tuple[bytes, str]]]:
        """A bucket key, wrapped under the master key and (once per bucket key, not per object) the second KMS key."""
        context = bucket_key_context(bucket)
        response = await self._primary.call("GenerateDataKey", Audit(principal, context, key_id), KeyId=key_id,
                                            KeySpec="AES_256", EncryptionContext=context)
        self._learn_arn(key_id, response["KeyId"])
        secret = response["Plaintext"]
        copies = [(response["CiphertextBlob"], response["KeyId"])]
        copies += [(copy.blob, copy.key_id) for copy in await self._secondary_copy(secret, context, principal)]
        self._remember(response["KeyId"], response["CiphertextBlob"], context, secret)
        return secret, copies

    def _remember(self, arn: str, blob: bytes, kms_context: Mapping[str, str], plaintext: bytes) -> None:
        """Cache a key KMS just generated, under exactly the (ARN, blob, context) a read will present: the entry
        a Decrypt of it would have made. Its age counts from now, like any entry's, so revoking the master key
        stops it within the TTL too. Called only once the write has every wrapped copy it needs."""
        if self._cache_new_keys:
            self._cache.put(cache_key(arn, blob, kms_context), bytearray(plaintext), time.monotonic())
            self._cache_changed()

    async def _secondary_copy(self, dek: bytes | bytearray, context: Mapping[str, str],
                              principal: str) -> list[WrappedKey]:
        """The data key wrapped under the second KMS key ([] without one). A write that cannot get it fails: every
        object must stay readable when the first KMS is gone."""
        if self._secondary is None:
            return []
        response = await self._secondary.endpoint.call(
            "Encrypt", Audit(principal, context, self._secondary.key_id), KeyId=self._secondary.key_id,
            Plaintext=bytes(dek), EncryptionContext=dict(context))
        if self._secondary_arn is None:
            self._secondary_arn = response["KeyId"]
        return [WrappedKey(KMS_SCHEME, response["KeyId"], response["CiphertextBlob"])]

    async def rewrap(self, wrapped: list[WrappedKey], source: Mapping[str, str], destination: Mapping[str, str],
                     principal: str) -> list[WrappedKey]:
        """The data key wrapped for another encryption context (a copy under a new name), under the master key the
        policy names for the destination: KMS ReEncrypt, so the plaintext key never leaves KMS. A bucket-key DEK is
        bound to its object's name by derivation (FORMAT.md §16), and a second KMS key needs the key itself: those
        cases unwrap and KMS Encrypt it."""
        destination_key_id = self._policy.key_for(destination[ENCRYPTION_CONTEXT_BUCKET],
                                                  destination[ENCRYPTION_CONTEXT_KEY])
        if self._secondary is None:
            trusted = await self._primary_arns()
            copy = next((w for w in wrapped if w.scheme in _KMS_SCHEMES and w.key_id in trusted), None)
            if copy is not None and copy.scheme == KMS_SCHEME:
                response = await self._primary.call("ReEncrypt", Audit(principal, destination, copy.key_id),
                                                    CiphertextBlob=copy.blob, SourceKeyId=copy.key_id,
                                                    SourceEncryptionContext=dict(source),
                                                    DestinationKeyId=destination_key_id,
                                                    DestinationEncryptionContext=dict(destination))
                return [WrappedKey(KMS_SCHEME, response["KeyId"], response["CiphertextBlob"])]
        dek = await self._unwrap("ReEncrypt", wrapped, source, principal)
        try:
            response = await self._primary.call("Encrypt", Audit(principal, destination, destination_key_id),
                                                KeyId=destination_key_id, Plaintext=bytes(dek),
                                                EncryptionContext=dict(destination))
            return [WrappedKey(KMS_SCHEME, response["KeyId"], response["CiphertextBlob"]),
                    *await self._secondary_copy(dek, destination, principal)]
        finally:
            zero(dek)

    # --- reading --------------------------------------------------------------------------------------------------
    async def open_keys(self, opener: Callable[[bytearray, Header], T], header: Header, wrapped: list[WrappedKey],
                        context: Mapping[str, str], principal: str) -> T:
        """`opener(dek, header)` (open_object_key, open_multipart_keys) on the unwrapped data key, which is zeroed
        afterwards: callers keep only the derived keys."""
        dek = await self.unwrap(wrapped, context, principal)
        try:
            return opener(dek, header)
        finally:
            zero(dek)

    async def unwrap(self, wrapped: list[WrappedKey], context: Mapping[str, str], principal: str) -> bytearray:
        """The plaintext data key (a copy the caller owns), from a copy wrapped by a configured key only; from the
        cache when this wrapped key was unwrapped for this context less than the cache's TTL ago. When the first
        KMS fails or times out and the object has a copy under the second KMS key, that one is used.

        The key id in the object's metadata is not trusted on its own: whoever can write to the store could
        plant an object wrapped under a KMS key of theirs, with this object's name as context. Only copies
        wrapped by configured keys are sent to KMS, and with that key's ARN pinned.
        """
        return await self._unwrap("Decrypt", wrapped, context, principal)

    async def _unwrap(self, operation: str, wrapped: list[WrappedKey], context: Mapping[str, str],
                      principal: str) -> bytearray:
        """Region by region, the first KMS's first: its configured keys are resolved on it (never on the other: a
        region that is down must not keep the other from serving), then the object's copies under them are
        unwrapped there. A region failing or throttling (REGION_FAULTS: every retry spent, or its breaker open)
        passes the read to the next region; a final answer (a revoked key, a tampered copy) ends it."""
        failure: errors.S3Error | None = None
        for endpoint, resolve in self._regions():
            try:
                trusted = await resolve()
            except REGION_FAULTS as exc:
                failure = failure or exc
                continue
            for copy in wrapped:
                if copy.scheme not in _KMS_SCHEMES or copy.key_id not in trusted:
                    continue
                if failure is not None:
                    self._metrics.kms_fallbacks.labels("Decrypt").inc()
                try:
                    return await self._unwrap_copy(endpoint, copy, context, principal)
                except REGION_FAULTS as exc:
                    failure = failure or exc
        if failure is not None:
            raise failure  # a region could not answer: that is the answer (503), not a refusal of the object
        audit(operation, "untrusted_key", principal=principal, **audited_object(context),
              kms_key_id=[w.key_id for w in wrapped])
        raise errors.UnsupportedFormat("The object's data key is not wrapped by a KMS key this gateway trusts.")

    async def _unwrap_copy(self, endpoint: KmsEndpoint, copy: WrappedKey, context: Mapping[str, str],
                           principal: str) -> bytearray:
        arn = copy.key_id
        if copy.scheme != SCHEME_BUCKET_KEY:
            return await self._cached_decrypt(endpoint, arn, copy.blob, context, context, principal)
        # FORMAT.md §16: the bucket key (cached under its own context, so one Decrypt serves every object of that
        # bucket key), then this object's DEK derived from it with the name being read.
        entry = BucketKeyBlob.decode(copy.blob)
        bucket = context[ENCRYPTION_CONTEXT_BUCKET]
        bucket_key = await self._cached_decrypt(endpoint, arn, entry.wrapped_bucket_key, bucket_key_context(bucket),
                                                context, principal)
        try:
            return bytearray(derive_dek(bucket_key, entry.salt, bucket, context[ENCRYPTION_CONTEXT_KEY]))
        finally:
            zero(bucket_key)

    async def _cached_decrypt(self, endpoint: KmsEndpoint, arn: str, blob: bytes, kms_context: Mapping[str, str],
                              object_context: Mapping[str, str], principal: str) -> bytearray:
        """KMS Decrypt of blob under kms_context, through the cache; audited for the object being read."""
        key = cache_key(arn, blob, kms_context)
        dek = self._cache.get(key, time.monotonic())
        self._cache_changed()
        if dek is not None:
            self._metrics.dek_cache_hits.inc()
            audit("CacheHit", "ok", principal=principal, **audited_object(object_context), kms_key_id=arn)
            return dek
        self._metrics.dek_cache_misses.inc()
        flight = self._inflight.get(key)
        if flight is not None:
            plaintext = await asyncio.shield(flight)
            audit("CacheHit", "joined", principal=principal, **audited_object(object_context), kms_key_id=arn)
            return bytearray(plaintext)
        # A task of its own: a cancelled first requester must not fail the others waiting for the same key.
        flight = asyncio.ensure_future(self._fill(endpoint, key, arn, blob, kms_context, object_context, principal))
        self._inflight[key] = flight
        flight.add_done_callback(lambda done: self._landed(key, done))
        return bytearray(await asyncio.shield(flight))

    async def _fill(self, endpoint: KmsEndpoint, key: CacheKey, arn: str, blob: bytes, kms_context: Mapping[str, str],
                    object_context: Mapping[str, str], principal: str) -> bytes:
        plaintext = await self._decrypt(endpoint, arn, blob, kms_context, object_context, principal)
        self._cache.put(key, bytearray(plaintext), time.monotonic())
        self._cache_changed()
        return plaintext

    def _landed(self, key: CacheKey, flight: asyncio.Future[bytes]) -> None:
        if self._inflight.get(key) is flight:
            del self._inflight[key]
        if not flight.cancelled():
            flight.exception()  # retrieved here: every waiter may have gone, which is no error of ours

    async def _decrypt(self, endpoint: KmsEndpoint, arn: str, blob: bytes, kms_context: Mapping[str, str],
                       object_context: Mapping[str, str], principal: str) -> bytes:
        response = await endpoint.call("Decrypt", Audit(principal, object_context, arn), CiphertextBlob=blob,
                                       KeyId=arn, EncryptionContext=dict(kms_context))
        return response["Plaintext"]

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(_SWEEP_INTERVAL_SECONDS)
            self._cache.sweep(time.monotonic())
            self._cache_changed()

    def _cache_changed(self) -> None:
        self._metrics.dek_cache_entries.set(len(self._cache))
        self._metrics.dek_cache_bytes.set(self._cache.size_bytes)

    # --- readiness --------------------------------------------------------------------------------------------------
    async def probe(self, context: Mapping[str, str], principal: str) -> bool:
        """Does some region's KMS give and take back a data key now (past the cache)? The first KMS's default key
        (GenerateDataKey, Decrypt); the second KMS key (Encrypt, Decrypt) too when the first fails or has not
        answered within _PROBE_HEDGE_SECONDS. One region failing, throttling or hanging must not take every pod out
        of service while the other still serves reads — nor make the probe outlast the kubelet's timeout (5 s)
        while the first region's retry deadline runs. A final answer (the default key disabled, access denied) is
        an answer about this gateway, and the probe fails with it."""
        first = asyncio.ensure_future(self._probe_primary(context, principal))
        probes = [first]
        try:
            if self._secondary is not None:
                await asyncio.wait([first], timeout=_PROBE_HEDGE_SECONDS)
                if not first.done() or isinstance(first.exception(), REGION_FAULTS):
                    probes.append(asyncio.ensure_future(self._probe_secondary(context, principal)))
            for finished in asyncio.as_completed(probes):
                try:
                    if await finished:
                        return True
                except REGION_FAULTS as exc:
                    log.warning("readiness: a KMS region is not answering (%s)", exc.code)
            return False
        finally:
            for probe in probes:
                probe.cancel()

    async def _probe_primary(self, context: Mapping[str, str], principal: str) -> bool:
        key_id = self._policy.default_key_id
        generated = await self._primary.call("GenerateDataKey", Audit(principal, context, key_id), KeyId=key_id,
                                             KeySpec="AES_256", EncryptionContext=dict(context))
        return await self._round_trip(self._primary, generated, generated["Plaintext"], context, principal)

    async def _probe_secondary(self, context: Mapping[str, str], principal: str) -> bool:
        assert self._secondary is not None
        plaintext = os.urandom(32)
        encrypted = await self._secondary.endpoint.call(
            "Encrypt", Audit(principal, context, self._secondary.key_id), KeyId=self._secondary.key_id,
            Plaintext=plaintext, EncryptionContext=dict(context))
        return await self._round_trip(self._secondary.endpoint, encrypted, plaintext, context, principal)

    @staticmethod
    async def _round_trip(endpoint: KmsEndpoint, wrapped: Mapping[str, object], plaintext: bytes,
                          context: Mapping[str, str], principal: str) -> bool:
        arn = str(wrapped["KeyId"])
        decrypted = await endpoint.call("Decrypt", Audit(principal, context, arn), KeyId=arn,
                                        CiphertextBlob=wrapped["CiphertextBlob"], EncryptionContext=dict(context))
        if decrypted["Plaintext"] != plaintext:
            log.warning("readiness: KMS returned a different key than it was given")
            return False
        return True

    # --- which keys are trusted ----------------------------------------------------------------------------------
    def _regions(self) -> list[tuple[KmsEndpoint, Callable[[], Awaitable[frozenset[str]]]]]:
        """Each KMS with the resolver of the key ARNs reading trusts there: the first's, then the second's."""
        regions = [(self._primary, self._primary_arns)]
        if self._secondary is not None:
            regions.append((self._secondary.endpoint, self._secondary_arns))
        return regions

    def _learn_arn(self, key_id: str, arn: str) -> None:
        """KMS names the key ARN behind `key_id` in every GenerateDataKey answer: the DescribeKey that reading would
        make to resolve it is not needed any more."""
        self._arns.setdefault(key_id, arn)

    async def _primary_arns(self) -> frozenset[str]:
        """The ARNs of the first KMS's configured keys (policy and decrypt-only keys), resolved on it, once each.
        Key ARNs are taken as they are; aliases and bare ids need a DescribeKey."""
        for key_id in (*self._policy.key_ids(), *self._decrypt_key_ids):
            if key_id not in self._arns:
                self._arns[key_id] = await self._resolve(self._primary, key_id)
        return frozenset(self._arns.values())

    async def _secondary_arns(self) -> frozenset[str]:
        """The second KMS key's ARN, resolved on the second KMS, once."""
        assert self._secondary is not None
        if self._secondary_arn is None:
            self._secondary_arn = await self._resolve(self._secondary.endpoint, self._secondary.key_id)
        return frozenset((self._secondary_arn,))

    @staticmethod
    async def _resolve(endpoint: KmsEndpoint, key_id: str) -> str:
        if _KEY_ARN.fullmatch(key_id):
            return key_id
        response = await endpoint.call("DescribeKey", None, KeyId=key_id)
        return str(response["KeyMetadata"]["Arn"])
