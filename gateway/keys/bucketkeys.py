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

from gateway.format.bucketkey import SCHEME_BUCKET_KEY, BucketKeyBlob, derive_dek, new_object_salt
from gateway.format.envelope import WrappedKey
from gateway.s3.access import bucket_matches

# (plaintext bucket key, [(its KMS CiphertextBlob, the ARN of the KMS key that wrapped it), …]): one copy per KMS
# key it is wrapped under (the master key, and a second KMS key if there is one).
NewBucketKey = Callable[[], Awaitable[tuple[bytes, list[tuple[bytes, str]]]]]


@dataclass(frozen=True)
class BucketKeyPolicy:
    """Which buckets use bucket keys (names or shell-style patterns) and when a bucket key is replaced."""
    buckets: tuple[str, ...]
    max_age_seconds: float
    max_objects: int

    def applies(self, bucket: str) -> bool:
        return bucket_matches(self.buckets, bucket)


class _BucketKey:
    __slots__ = ("secret", "copies", "created", "objects")

    def __init__(self, secret: bytes, copies: list[tuple[bytes, str]], created: float) -> None:
        self.secret = bytearray(secret)
        self.copies, self.created, self.objects = copies, created, 0

    def usable(self, now: float, policy: BucketKeyPolicy) -> bool:
        return now - self.created < policy.max_age_seconds and self.objects < policy.max_objects

    def zero(self) -> None:
        self.secret[:] = bytes(len(self.secret))

    def __repr__(self) -> str:
        return f"_BucketKey(arns={[arn for _, arn in self.copies]!r}, objects={self.objects})"


class BucketKeys:
    def __init__(self, policy: BucketKeyPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._current: dict[tuple[str, str], _BucketKey] = {}  # by (bucket, master key id)
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    def applies(self, bucket: str) -> bool:
        return self.policy.applies(bucket)

    async def issue(self, bucket: str, key: str, master_key_id: str, new_bucket_key: NewBucketKey
                    ) -> tuple[bytes, list[WrappedKey]]:
        """A fresh DEK for object (bucket, key) and its `kms-bucket-key` entries (one per KMS key the bucket key is
        wrapped under, all with the object's salt); one bucket key per bucket and master key, and at most one KMS
        call per bucket key (concurrent writers wait for the one renewing it)."""
        slot = (bucket, master_key_id)
        current = self._current.get(slot)
        if current is None or not current.usable(self._clock(), self.policy):
            async with self._locks.setdefault(slot, asyncio.Lock()):
                current = self._current.get(slot)
                if current is None or not current.usable(self._clock(), self.policy):
                    secret, copies = await new_bucket_key()
                    if current is not None:
                        current.zero()
                    current = self._current[slot] = _BucketKey(secret, copies, self._clock())
        current.objects += 1
        salt = new_object_salt()
        dek = derive_dek(current.secret, salt, bucket, key)
        return dek, [WrappedKey(SCHEME_BUCKET_KEY, arn, BucketKeyBlob(salt, wrapped).encode())
                     for wrapped, arn in current.copies]

    def close(self) -> None:
        for current in self._current.values():
            current.zero()
        self._current.clear()
