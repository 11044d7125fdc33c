"""Plaintext data keys unwrapped recently, so that warm reads make no KMS call. Pure policy: no I/O, no clock of
its own (every call takes `now`, in monotonic seconds), no locks (the event loop is the only caller).

Bounds, each enforced on every change:
- age: an entry is never served `ttl_seconds` after it was fetched from KMS. The clock starts at the fetch and
  is never extended by use: this is what bounds how long a disabled or deleted master key keeps working
  (docs/KEYS.md, revocation). Expired entries are zeroed and dropped by `sweep` and on every get/put.
- uses: an entry serves at most `max_uses` hits, then KMS is asked again.
- entries and bytes: least recently used entries go first. An entry's bytes are the DEK plus its key (wrapped
  blob, encryption context, KMS key ARN): the key, not the 32-byte DEK, is what grows with object names.

Secrets: the cache owns the `bytearray` it is given and overwrites it with zeros when the entry leaves, whatever
the reason. What `get` returns is a new `bytearray` the caller owns. Neither entries nor the cache show key
material in their repr. (Python may still hold copies it made along the way, e.g. the immutable `bytes` a KMS
response was parsed into: zeroing is what the language allows, not a guarantee.)
"""
from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

# (KMS key ARN, wrapped DEK blob, encryption context as sorted pairs): a DEK is only ever served for exactly the
# request KMS would have answered with it.
CacheKey = tuple[str, bytes, tuple[tuple[str, str], ...]]

EVICTION_REASONS = ("expired", "used_up", "entries", "bytes", "replaced", "cleared")


def cache_key(key_arn: str, blob: bytes, context: Mapping[str, str]) -> CacheKey:
    return key_arn, bytes(blob), tuple(sorted(context.items()))


def _key_bytes(key: CacheKey) -> int:
    arn, blob, context = key
    return len(arn) + len(blob) + sum(len(name) + len(value) for name, value in context)


@dataclass(frozen=True)
class CacheLimits:
    ttl_seconds: float  # 0: nothing is cached
    max_entries: int
    max_bytes: int
    max_uses: int


class _Entry:
    __slots__ = ("dek", "expires_at", "uses_left", "size_bytes")

    def __init__(self, dek: bytearray, expires_at: float, uses_left: int, size_bytes: int) -> None:
        self.dek, self.expires_at, self.uses_left, self.size_bytes = dek, expires_at, uses_left, size_bytes

    def __repr__(self) -> str:
        return f"_Entry(<{len(self.dek)}-byte key hidden>, expires_at={self.expires_at}, uses_left={self.uses_left})"


class DekCache:
    def __init__(self, limits: CacheLimits, on_evict: Callable[[str], None] = lambda reason: None) -> None:
        self.limits = limits
        self._on_evict = on_evict
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()  # least recently used first
        # Insertion order is expiry order (one TTL for all), so expired entries are found at the front in O(1)
        # each. Items whose entry was replaced or evicted meanwhile are skipped (identity check in sweep).
        self._by_age: deque[tuple[CacheKey, _Entry]] = deque()
        self.size_bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"DekCache({len(self._entries)} entries, {self.size_bytes} bytes)"

    def get(self, key: CacheKey, now: float) -> bytearray | None:
        """A copy of the cached DEK (one use spent), or None."""
        self.sweep(now)
        entry = self._entries.get(key)
        if entry is None:
            return None
        entry.uses_left -= 1
        dek = bytearray(entry.dek)
        if entry.uses_left <= 0:
            self._remove(key, "used_up")
        else:
            self._entries.move_to_end(key)
        return dek

    def put(self, key: CacheKey, dek: bytearray, now: float) -> None:
        """Cache `dek`, which the cache now owns (it is zeroed when the entry leaves; the caller must not keep
        using it). A DEK that cannot be cached under the limits is zeroed at once."""
        self.sweep(now)
        size = len(dek) + _key_bytes(key)
        if key in self._entries:
            self._remove(key, "replaced")
        if self.limits.ttl_seconds <= 0 or size > self.limits.max_bytes:
            zero(dek)
            return
        entry = _Entry(dek, now + self.limits.ttl_seconds, self.limits.max_uses, size)
        self._entries[key] = entry
        self._by_age.append((key, entry))
        if len(self._by_age) > 2 * len(self._entries) + 64:
            # Evicted entries leave their items behind until they reach the front; keep that memory bounded.
            self._by_age = deque(item for item in self._by_age if self._entries.get(item[0]) is item[1])
        self.size_bytes += size
        while len(self._entries) > self.limits.max_entries:
            self._remove(next(iter(self._entries)), "entries")
        while self.size_bytes > self.limits.max_bytes:
            self._remove(next(iter(self._entries)), "bytes")

    def sweep(self, now: float) -> None:
        """Zero and drop every expired entry."""
        while self._by_age:
            key, entry = self._by_age[0]
            if self._entries.get(key) is not entry:
                self._by_age.popleft()  # already gone (evicted or replaced)
            elif entry.expires_at <= now:
                self._by_age.popleft()
                self._remove(key, "expired")
            else:
                break

    def clear(self) -> None:
        for key in list(self._entries):
            self._remove(key, "cleared")
        self._by_age.clear()

    def _remove(self, key: CacheKey, reason: str) -> None:
        entry = self._entries.pop(key)
        zero(entry.dek)
        self.size_bytes -= entry.size_bytes
        self._on_evict(reason)


def zero(buffer: bytearray) -> None:
    """Overwrite a plaintext key with zeros."""
    buffer[:] = bytes(len(buffer))
