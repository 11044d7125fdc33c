"""The part-table cache stays within its bound on part entries, least recently used first out."""
from __future__ import annotations

import os

from gateway.format.envelope import new_multipart_keys
from gateway.format.multipart import PartEntry, PartTable
from gateway.proxy.tablecache import CachedTable, TableCache

HEADER, _ = new_multipart_keys(os.urandom(32))


def _entry(parts: int) -> CachedTable:
    table = PartTable(tuple(PartEntry(n, 5, bytes(32)) for n in range(1, parts + 1)), parts)
    return CachedTable('"etag"', HEADER, table)


def test_bounded_by_parts_least_recently_used_first():
    cache = TableCache(max_parts=10)
    cache.put("b", "one", _entry(4))
    cache.put("b", "two", _entry(4))
    assert cache.get("b", "one") is not None  # now the most recently used
    cache.put("b", "three", _entry(4))  # 12 parts: "two" goes
    assert cache.get("b", "two") is None
    assert cache.get("b", "one") is not None and cache.get("b", "three") is not None
    cache.put("b", "huge", _entry(11))  # larger than the whole cache: not kept, nothing evicted for it
    assert cache.get("b", "huge") is None and cache.get("b", "one") is not None


def test_put_replaces_and_drop_forgets():
    cache = TableCache(max_parts=10)
    cache.put("b", "k", _entry(6))
    cache.put("b", "k", _entry(6))  # replaced, not counted twice
    cache.put("b", "other", _entry(4))
    assert cache.get("b", "k") is not None and cache.get("b", "other") is not None
    cache.drop("b", "k")
    cache.drop("b", "k")
    assert cache.get("b", "k") is None
    cache.put("b", "more", _entry(6))
    assert cache.get("b", "other") is not None
