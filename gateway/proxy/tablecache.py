"""Part tables of multipart-layout objects read recently, so that the next ranged read of the same object costs
one upstream request instead of three (first response, table, covering bytes).

An entry is only a hint: it is used with `If-Match` on the ETag it was read under, and the response's envelope
header and stored size must be the ones the table was authenticated with; otherwise the entry is dropped and
the read takes the full path. Every segment is still opened under keys derived for this very read from the
object's DEK (unwrapped, or from the DEK cache) and checked against its key commitment. Bounded by the number of
part entries held (a table of 10,000 parts is ~0.5 MB in memory).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from gateway.format.envelope import Header
from gateway.format.multipart import PartTable


@dataclass(frozen=True)
class CachedTable:
    etag: str
    header: Header
    table: PartTable


class TableCache:
    def __init__(self, max_parts: int = 20_000) -> None:
        self._max_parts = max_parts
        self._parts = 0
        self._entries: OrderedDict[tuple[str, str], CachedTable] = OrderedDict()

    def get(self, bucket: str, key: str) -> CachedTable | None:
        entry = self._entries.get((bucket, key))
        if entry is not None:
            self._entries.move_to_end((bucket, key))
        return entry

    def put(self, bucket: str, key: str, entry: CachedTable) -> None:
        self.drop(bucket, key)
        size = len(entry.table.parts)
        if size > self._max_parts:
            return
        self._entries[(bucket, key)] = entry
        self._parts += size
        while self._parts > self._max_parts:
            _, evicted = self._entries.popitem(last=False)
            self._parts -= len(evicted.table.parts)

    def drop(self, bucket: str, key: str) -> None:
        entry = self._entries.pop((bucket, key), None)
        if entry is not None:
            self._parts -= len(entry.table.parts)
