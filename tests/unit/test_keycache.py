"""The DEK cache policy (gateway.keys.cache): TTL, uses, entries, bytes, zeroing. Pure: the clock is a number."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.keys.cache import CacheLimits, DekCache, cache_key

ARN = "arn:aws:kms:us-east-1:111122223333:key/k"
CONTEXT = {"envelope-gateway:bucket": "b", "envelope-gateway:key": "k"}
LIMITS = CacheLimits(ttl_seconds=300, max_entries=10, max_bytes=1 << 20, max_uses=1000)


def dek(n: int = 1) -> bytearray:
    return bytearray([n]) * 32


def key(blob: bytes = b"blob", context: dict[str, str] | None = None, arn: str = ARN):
    return cache_key(arn, blob, CONTEXT if context is None else context)


def entry_bytes(blob: bytes) -> int:
    return 32 + len(ARN) + len(blob) + sum(len(k) + len(v) for k, v in CONTEXT.items())


def recording(limits: CacheLimits = LIMITS) -> tuple[DekCache, list[str]]:
    evicted: list[str] = []
    return DekCache(limits, on_evict=evicted.append), evicted


def test_a_hit_returns_a_copy_the_caller_owns():
    cache, _ = recording()
    cache.put(key(), dek(7), now=0)
    first = cache.get(key(), now=1)
    assert first == dek(7)
    first[:] = bytes(32)  # the caller zeroes its copy: the cached key is untouched
    assert cache.get(key(), now=2) == dek(7)


def test_the_key_is_the_wrapped_key_its_context_and_the_master_key():
    cache, _ = recording()
    cache.put(key(), dek(), now=0)
    assert cache.get(key(blob=b"other"), now=0) is None
    assert cache.get(key(context={**CONTEXT, "envelope-gateway:key": "k2"}), now=0) is None
    assert cache.get(key(context={"envelope-gateway:bucket": "b"}), now=0) is None
    assert cache.get(key(arn=ARN + "2"), now=0) is None
    # The order of the context's pairs does not matter (KMS does not care either).
    assert cache.get(key(context=dict(reversed(list(CONTEXT.items())))), now=0) == dek()


def test_ttl_counts_from_the_fetch_and_is_not_extended_by_use():
    cache, evicted = recording()
    original = dek(3)
    cache.put(key(), original, now=100)
    for t in (100, 200, 399.999):
        assert cache.get(key(), now=t) == dek(3)
    assert cache.get(key(), now=400) is None
    assert evicted == ["expired"]
    assert original == bytes(32), "an expired key is zeroed"
    assert len(cache) == 0 and cache.size_bytes == 0


def test_sweep_zeroes_expired_keys_without_any_request():
    cache, evicted = recording()
    keys = [dek(n) for n in range(1, 4)]
    for n, value in enumerate(keys):
        cache.put(key(bytes([n])), value, now=n)
    cache.sweep(now=301.5)  # the first two are past their TTL, the third is not
    assert evicted == ["expired", "expired"]
    assert keys[0] == keys[1] == bytes(32) and keys[2] == dek(3)
    assert len(cache) == 1


def test_max_uses_counts_hits_then_kms_is_asked_again():
    cache, evicted = recording(CacheLimits(300, 10, 1 << 20, max_uses=3))
    original = dek()
    cache.put(key(), original, now=0)
    assert [cache.get(key(), now=0) is not None for _ in range(4)] == [True, True, True, False]
    assert evicted == ["used_up"] and original == bytes(32)


def test_max_entries_evicts_the_least_recently_used():
    cache, evicted = recording(CacheLimits(300, max_entries=2, max_bytes=1 << 20, max_uses=1000))
    a, b, c = dek(1), dek(2), dek(3)
    cache.put(key(b"a"), a, now=0)
    cache.put(key(b"b"), b, now=0)
    assert cache.get(key(b"a"), now=0)  # a is now the most recently used
    cache.put(key(b"c"), c, now=0)
    assert evicted == ["entries"] and b == bytes(32)
    assert cache.get(key(b"b"), now=0) is None
    assert cache.get(key(b"a"), now=0) == dek(1) and cache.get(key(b"c"), now=0) == dek(3)


def test_max_bytes_counts_the_key_context_and_wrapped_copy():
    one = entry_bytes(b"a")
    cache, evicted = recording(CacheLimits(300, max_entries=100, max_bytes=2 * one, max_uses=1000))
    cache.put(key(b"a"), dek(), now=0)
    cache.put(key(b"b"), dek(), now=0)
    assert cache.size_bytes == 2 * one and evicted == []
    cache.put(key(b"c"), dek(), now=0)
    assert evicted == ["bytes"] and cache.size_bytes == 2 * one
    assert cache.get(key(b"a"), now=0) is None


def test_an_entry_larger_than_max_bytes_is_not_cached_but_zeroed():
    cache, evicted = recording(CacheLimits(300, 10, max_bytes=100, max_uses=1000))
    value = dek()
    cache.put(key(b"x" * 200), value, now=0)
    assert len(cache) == 0 and value == bytes(32) and evicted == []


def test_ttl_zero_turns_the_cache_off():
    cache, _ = recording(CacheLimits(0, 10, 1 << 20, 1000))
    value = dek()
    cache.put(key(), value, now=0)
    assert cache.get(key(), now=0) is None and value == bytes(32)


def test_a_refetched_key_replaces_the_old_one_with_a_fresh_ttl():
    cache, evicted = recording()
    old = dek(1)
    cache.put(key(), old, now=0)
    cache.put(key(), dek(2), now=200)
    assert evicted == ["replaced"] and old == bytes(32)
    assert cache.get(key(), now=450) == dek(2)
    assert len(cache) == 1 and cache.size_bytes == entry_bytes(b"blob")


def test_clear_zeroes_everything():
    cache, evicted = recording()
    values = [dek(n) for n in range(1, 4)]
    for n, value in enumerate(values):
        cache.put(key(bytes([n])), value, now=0)
    cache.clear()
    assert all(v == bytes(32) for v in values) and evicted == ["cleared"] * 3 and cache.size_bytes == 0


def test_no_key_material_in_reprs():
    cache, _ = recording()
    cache.put(key(), bytearray(b"\xab" * 32), now=0)
    text = repr(cache) + repr(list(cache._entries.values()))
    assert "ab" * 4 not in text and "\\xab" not in text and "171" not in text


def test_the_age_index_stays_bounded_under_churn():
    cache, _ = recording(CacheLimits(300, max_entries=4, max_bytes=1 << 20, max_uses=1000))
    for n in range(10_000):
        cache.put(key(n.to_bytes(4, "big")), dek(), now=0)
    assert len(cache) == 4 and len(cache._by_age) <= 2 * 4 + 65


# --- properties -------------------------------------------------------------------------------------------------

operations = st.lists(st.tuples(st.sampled_from(["put", "get", "sweep"]), st.integers(0, 5),
                                st.floats(0, 50, allow_nan=False)), max_size=60)


@settings(max_examples=300, deadline=None)
@given(operations, st.integers(1, 4), st.integers(1, 4), st.floats(0, 30, allow_nan=False),
       st.integers(120, 600))
def test_no_bound_is_ever_exceeded(ops, max_entries, max_uses, ttl, max_bytes):
    """Against a model of what was fetched when and served how often: a hit is always the latest key fetched
    for its name, younger than the TTL, within its uses; entries and bytes stay within their limits; whatever
    left the cache is zeroed."""
    limits = CacheLimits(ttl, max_entries, max_bytes, max_uses)
    cache = DekCache(limits)
    now = 0.0
    fetched: dict[int, tuple[float, int, int]] = {}  # name -> (fetched at, value, hits so far)
    handed: list[bytearray] = []
    counter = 0
    for op, name, step in ops:
        now += step
        if op == "put":
            counter += 1
            value = bytearray([counter % 256]) * 32
            handed.append(value)
            cache.put(key(bytes([name])), value, now)
            fetched[name] = (now, counter % 256, 0)
        elif op == "get":
            got = cache.get(key(bytes([name])), now)
            if got is not None:
                at, value, hits = fetched[name]
                assert got == bytearray([value]) * 32
                assert now - at < ttl
                assert hits < max_uses
                fetched[name] = (at, value, hits + 1)
        else:
            cache.sweep(now)
        assert len(cache) <= max_entries and cache.size_bytes <= max_bytes
    live = {id(entry.dek) for entry in cache._entries.values()}
    assert all(value == bytes(32) for value in handed if id(value) not in live)


@pytest.mark.parametrize("bad", [b"", b"\x00" * 31])
def test_any_key_length_is_held_as_given(bad):
    # The cache does not judge key material; the format layer refuses wrong sizes (open_object_key).
    cache, _ = recording()
    cache.put(key(), bytearray(bad), now=0)
    assert cache.get(key(), now=0) == bytearray(bad)
