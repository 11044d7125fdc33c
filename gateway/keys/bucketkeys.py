"""Bucket-key mode (opt-in per bucket): the writer's current bucket key per bucket, renewed by age and use.

A bucket key is one KMS GenerateDataKey (context: the bucket, §16 of docs/FORMAT.md) that then gives every object
written to that bucket its own DEK by HKDF with a fresh salt and the object's name — no KMS call per object. It is
replaced after `max_age_seconds` or `max_objects` objects, whichever comes first; the age also bounds how long a
disabled master key keeps being used for new objects. The plaintext bucket key lives in a bytearray that is
zeroed when the key is replaced.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.format.bucketkey import SCHEME_BUCKET_KEY, BucketKeyBlob, derive_dek
from gateway.format.envelope import WrappedKey
from gateway.s3.access import bucket_matches

# (plaintext bucket key, its KMS CiphertextBlob, the ARN of the KMS key that wrapped it)
NewBucketKey = Callable[[], Awaitable[tuple[bytes, bytes, str]]]


@dataclass(frozen=True)
class BucketKeyPolicy:
    """Which buckets use bucket keys (names or shell-style patterns) and when a bucket key is replaced."""
    buckets: tuple[str, ...]
    max_age_seconds: float
    max_objects: int

    def applies(self, bucket: str) -> bool:
        return bucket_matches(self.buckets, bucket)


class _BucketKey:
    __slots__ = ("secret", "wrapped", "arn", "created", "objects")

    def __init__(self, secret: bytes, wrapped: bytes, arn: str, created: float) -> None:
        self.secret = bytearray(secret)
        self.wrapped, self.arn, self.created, self.objects = wrapped, arn, created, 0

    def usable(self, now: float, policy: BucketKeyPolicy) -> bool:
        return now - self.created < policy.max_age_seconds and self.objects < policy.max_objects

    def zero(self) -> None:
        self.secret[:] = bytes(len(self.secret))

    def __repr__(self) -> str:
        return f"_BucketKey(arn={self.arn!r}, objects={self.objects})"


class BucketKeys:
    def __init__(self, policy: BucketKeyPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._current: dict[str, _BucketKey] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def applies(self, bucket: str) -> bool:
        return self.policy.applies(bucket)

    async def issue(self, bucket: str, key: str, new_bucket_key: NewBucketKey) -> tuple[bytes, WrappedKey]:
        """A fresh DEK for object (bucket, key) and its `kms-bucket-key` entry; at most one KMS call per bucket
        key (concurrent writers wait for the one renewing it)."""
        current = self._current.get(bucket)
        if current is None or not current.usable(self._clock(), self.policy):
            async with self._locks.setdefault(bucket, asyncio.Lock()):
                current = self._current.get(bucket)
                if current is None or not current.usable(self._clock(), self.policy):
                    secret, wrapped, arn = await new_bucket_key()
                    if current is not None:
                        current.zero()
                    current = self._current[bucket] = _BucketKey(secret, wrapped, arn, self._clock())
        current.objects += 1
        blob = BucketKeyBlob.fresh(current.wrapped)
        dek = derive_dek(current.secret, blob.salt, bucket, key)
        return dek, WrappedKey(SCHEME_BUCKET_KEY, current.arn, blob.encode())

    def close(self) -> None:
        for current in self._current.values():
            current.zero()
        self._current.clear()
