"""Generated object bodies: deterministic from (seed, size), streamed in chunks, never held whole.

Byte `o` of an object is a 1 MiB random pattern (fixed for the process), rotated by a per-object shift derived
from the seed, except that the first 16 bytes of every 64 KiB block hold a stamp `seed (u64 BE) ‖ block (u64 BE)`.
So no two 64 KiB blocks of one object are equal, nor any two objects: a proxy that reorders, duplicates, drops
or mixes segments or objects changes the digest. Any range [start, end) can be regenerated on its own, which
is how ranged GETs are verified.

Generating costs one memcpy per chunk plus 16 tiny stamp writes per MiB; the digest (CRC-64/NVME from awscrt by
default, ~14 GiB/s with carry-less multiply) is far cheaper than any cryptographic hash, so the load client stays
a small share of its CPU. `sha256` is available when a cryptographic digest is wanted.
"""
from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Iterator
from typing import Protocol

from awscrt import checksums as _crt

PATTERN_BYTES = 1 << 20
STAMP_EVERY_BYTES = 64 * 1024
STAMP_BYTES = 16
DEFAULT_CHUNK_BYTES = 1 << 20

_STAMP = struct.Struct(">QQ")
_PATTERN = random.Random(0x5EED_0F_E7E1_0DE).randbytes(PATTERN_BYTES)
_DOUBLED = memoryview(_PATTERN + _PATTERN)  # rotation without a per-object copy: [shift : shift + n]


class Digest(Protocol):
    def update(self, data: bytes | bytearray | memoryview) -> None: ...
    def hexdigest(self) -> str: ...


class Crc64:
    """CRC-64/NVME (awscrt, hardware-accelerated): a fast integrity digest, not a cryptographic one."""
    __slots__ = ("_value",)
    name = "crc64nvme"

    def __init__(self) -> None:
        self._value = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._value = _crt.crc64nvme(data, self._value)

    def hexdigest(self) -> str:
        return f"{self._value:016x}"


DIGESTS = ("crc64nvme", "sha256")


def new_digest(name: str) -> Digest:
    if name == "crc64nvme":
        return Crc64()
    if name == "sha256":
        return hashlib.sha256()
    raise ValueError(f"unknown digest {name!r} (one of {', '.join(DIGESTS)})")


def object_seed(*parts: object) -> int:
    """A 63-bit seed from any identifying parts (workload, target, repetition, index)."""
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big") >> 1


class PatternData:
    """The body of one generated object."""
    __slots__ = ("seed", "size", "_shift")

    def __init__(self, seed: int, size: int) -> None:
        if size < 0:
            raise ValueError("size must not be negative")
        self.seed = seed
        self.size = size
        self._shift = seed % PATTERN_BYTES

    def chunk(self, start: int, end: int) -> bytearray:
        """Bytes [start, end) of the object; the span must lie within one 1 MiB pattern period."""
        if not 0 <= start <= end <= self.size:
            raise ValueError("range outside the object")
        block_base = start - start % PATTERN_BYTES
        if end - block_base > PATTERN_BYTES:
            raise ValueError("a chunk may not cross a pattern period; use chunks()")
        lo = self._shift + (start - block_base)
        out = bytearray(_DOUBLED[lo:lo + (end - start)])
        # Stamps at every 64 KiB boundary that the span touches (including one that begins before `start`).
        first = start - start % STAMP_EVERY_BYTES
        for boundary in range(first, end, STAMP_EVERY_BYTES):
            stamp_end = boundary + STAMP_BYTES
            if stamp_end <= start:
                continue
            stamp = _STAMP.pack(self.seed, boundary // STAMP_EVERY_BYTES)
            a, b = max(boundary, start), min(stamp_end, end)
            out[a - start:b - start] = stamp[a - boundary:b - boundary]
        return out

    def chunks(self, start: int = 0, end: int | None = None,
               chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[bytearray]:
        """Bytes [start, end) in pieces of at most `chunk_bytes`, cut at pattern periods. Each piece is a fresh
        buffer the caller may keep (a transport may hold it until it is sent)."""
        end = self.size if end is None else end
        if not 0 <= start <= end <= self.size:
            raise ValueError("range outside the object")
        chunk_bytes = max(1, min(chunk_bytes, PATTERN_BYTES))
        position = start
        while position < end:
            period_end = position - position % PATTERN_BYTES + PATTERN_BYTES
            stop = min(end, period_end, position + chunk_bytes)
            yield self.chunk(position, stop)
            position = stop

    def digest(self, name: str = "crc64nvme", start: int = 0, end: int | None = None) -> str:
        """The digest of bytes [start, end), computed by generating them."""
        digest = new_digest(name)
        for piece in self.chunks(start, end):
            digest.update(piece)
        return digest.hexdigest()

    def crc32(self) -> int:
        value = 0
        for piece in self.chunks():
            value = _crt.crc32(piece, value)
        return value
