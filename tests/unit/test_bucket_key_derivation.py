"""Bucket-key mode: the pure derivation and entry encoding (gateway.format.bucketkey) and the writer's bucket-key
renewal (gateway.keys.bucketkeys) with a stand-in for KMS and a hand-driven clock."""
from __future__ import annotations

import asyncio
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import errors
from gateway.format.bucketkey import (SCHEME_BUCKET_KEY, BucketKeyBlob, bucket_key_context, derive_dek, dek_info,
                                      new_object_salt)
from gateway.keys.bucketkeys import BucketKeyPolicy, BucketKeys

BK = bytes(range(32))
SALT = bytes(range(32, 64))


def rfc5869(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def test_derivation_is_rfc5869_hkdf_over_the_name() -> None:
    info = b"envelope-gateway/v1/bucket-key-dek" + b"\x00\x06bucket" + b"\x00\x07dir/obj"
    assert dek_info("bucket", "dir/obj") == info
    assert derive_dek(BK, SALT, "bucket", "dir/obj") == rfc5869(BK, SALT, info)
    assert derive_dek(bytearray(BK), SALT, "bucket", "dir/obj") == rfc5869(BK, SALT, info)


@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20),
       st.text(min_size=1, max_size=20))
def test_different_names_derive_different_keys(bucket_a: str, key_a: str, bucket_b: str, key_b: str) -> None:
    if (bucket_a, key_a) != (bucket_b, key_b):
        assert derive_dek(BK, SALT, bucket_a, key_a) != derive_dek(BK, SALT, bucket_b, key_b)


def test_length_prefixes_keep_names_apart() -> None:
    assert dek_info("ab", "c") != dek_info("a", "bc")


def test_salt_and_bucket_key_matter() -> None:
    base = derive_dek(BK, SALT, "b", "k")
    assert derive_dek(BK, bytes(32), "b", "k") != base
    assert derive_dek(bytes(32), SALT, "b", "k") != base
    with pytest.raises(ValueError):
        derive_dek(BK[:16], SALT, "b", "k")


def test_blob_encoding() -> None:
    blob = BucketKeyBlob(SALT, b"wrapped-by-kms")
    assert blob.encode() == b"\x01" + SALT + b"wrapped-by-kms"
    assert BucketKeyBlob.decode(blob.encode()) == blob
    assert "wrapped-by-kms" not in repr(blob)
    with pytest.raises(errors.UnsupportedFormat):
        BucketKeyBlob.decode(b"\x02" + SALT + b"x")
    with pytest.raises(errors.TamperedCiphertext):
        BucketKeyBlob.decode(b"\x01" + SALT)
    salt = new_object_salt()
    assert len(salt) == 32 and salt != new_object_salt()


def test_context_names_the_bucket_but_no_object() -> None:
    assert bucket_key_context("b") == {"envelope-gateway:bucket": "b", "envelope-gateway:bucket-key": "v1"}


class FakeKMS:
    """Hands out numbered bucket keys; counts calls."""

    def __init__(self, delay_seconds: float = 0.0) -> None:
        self.calls = 0
        self.delay_seconds = delay_seconds
        self.handed_out: list[bytearray] = []

    async def new_bucket_key(self) -> tuple[bytes, list[tuple[bytes, str]]]:
        self.calls += 1
        await asyncio.sleep(self.delay_seconds)
        secret = hashlib.sha256(b"bucket key %d" % self.calls).digest()
        return secret, [(b"wrapped-%d" % self.calls, "arn:aws:kms:us-east-1:111122223333:key/test")]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def keys(max_age_seconds: float = 300, max_objects: int = 100_000, clock=None) -> BucketKeys:
    return BucketKeys(BucketKeyPolicy(("logs", "ingest-*"), max_age_seconds, max_objects), clock or Clock())


async def test_one_kms_call_for_many_objects_and_every_dek_rederivable() -> None:
    kms, bucket_keys = FakeKMS(), keys()
    deks = set()
    for i in range(1000):
        dek, [wrapped] = await bucket_keys.issue("logs", f"k{i}", "alias/k", kms.new_bucket_key)
        entry = BucketKeyBlob.decode(wrapped.blob)
        assert wrapped.scheme == SCHEME_BUCKET_KEY and entry.wrapped_bucket_key == b"wrapped-1"
        assert derive_dek(hashlib.sha256(b"bucket key 1").digest(), entry.salt, "logs", f"k{i}") == dek
        deks.add(dek)
    assert kms.calls == 1 and len(deks) == 1000


async def test_renewed_by_object_count_and_by_age() -> None:
    kms, clock = FakeKMS(), Clock()
    bucket_keys = keys(max_age_seconds=60, max_objects=10, clock=clock)
    for i in range(100):
        await bucket_keys.issue("logs", f"k{i}", "alias/k", kms.new_bucket_key)
    assert kms.calls == 10
    clock.now += 59.9
    await bucket_keys.issue("logs", "x", "alias/k", kms.new_bucket_key)
    assert kms.calls == 11  # the 10th key was full
    clock.now += 59.9
    await bucket_keys.issue("logs", "y", "alias/k", kms.new_bucket_key)
    assert kms.calls == 11
    clock.now += 0.2
    await bucket_keys.issue("logs", "z", "alias/k", kms.new_bucket_key)
    assert kms.calls == 12


async def test_concurrent_writers_share_one_renewal() -> None:
    kms, bucket_keys = FakeKMS(delay_seconds=0.01), keys()
    await asyncio.gather(*(bucket_keys.issue("logs", f"k{i}", "alias/k", kms.new_bucket_key) for i in range(50)))
    assert kms.calls == 1


async def test_buckets_have_keys_of_their_own_and_replaced_keys_are_zeroed() -> None:
    kms, bucket_keys = FakeKMS(), keys(max_objects=1)
    await bucket_keys.issue("logs", "a", "alias/k", kms.new_bucket_key)
    first = bucket_keys._current[("logs", "alias/k")].secret
    await bucket_keys.issue("ingest-1", "a", "alias/k", kms.new_bucket_key)
    assert kms.calls == 2
    await bucket_keys.issue("logs", "b", "alias/k", kms.new_bucket_key)
    assert first == bytearray(32)
    bucket_keys.close()
    assert not bucket_keys._current


def test_policy_patterns() -> None:
    policy = BucketKeyPolicy(("logs", "ingest-*"), 300, 10)
    assert policy.applies("logs") and policy.applies("ingest-eu") and not policy.applies("logs2")


async def test_one_bucket_key_per_master_key() -> None:
    kms, bucket_keys = FakeKMS(), keys()
    await bucket_keys.issue("logs", "a", "alias/one", kms.new_bucket_key)
    await bucket_keys.issue("logs", "b", "alias/two", kms.new_bucket_key)
    await bucket_keys.issue("logs", "c", "alias/one", kms.new_bucket_key)
    assert kms.calls == 2


async def test_every_copy_of_the_bucket_key_gets_an_entry_with_the_same_salt() -> None:
    async def two_regions() -> tuple[bytes, list[tuple[bytes, str]]]:
        return BK, [(b"primary", "arn:one"), (b"secondary", "arn:two")]
    dek, entries = await keys().issue("logs", "k", "alias/k", two_regions)
    blobs = [BucketKeyBlob.decode(entry.blob) for entry in entries]
    assert [entry.key_id for entry in entries] == ["arn:one", "arn:two"]
    assert blobs[0].salt == blobs[1].salt and derive_dek(BK, blobs[0].salt, "logs", "k") == dek
