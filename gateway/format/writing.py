"""What a writer that knows an object's plaintext size up front seals, in which order (docs/FORMAT.md §10, §15.8):
`envelope-gateway encrypt-existing`, which encrypts objects already in the store. Pure: the caller hands in a
`read(n)` of the plaintext and sends the sealed bytes wherever it likes.

Objects up to one part's size get the one-request layout; larger ones the multipart layout with parts of that
size, its part table known before the first byte is sealed (every part's size and salt are chosen up front), so
the trailer is appended to the last part (M = N, §15.6) and no part is ever sealed twice.
"""
from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from gateway.format.envelope import PART_SALT_SIZE_BYTES, MultipartKeys, ObjectKey
from gateway.format.multipart import MAX_PARTS, PartEntry, PartTable, seal_trailer, trailer_size
from gateway.format.segments import seal_batch
from gateway.format.sizes import SEGMENT_SIZE_BYTES, ciphertext_size, largest_plaintext_within

# S3: at least 5 MiB for every part but the last, at most 5 GiB stored per part (and per PutObject).
MIN_PART_BYTES = 5 * 1024**2
MAX_STORED_PART_BYTES = 5 * 1024**3
# Plaintext sealed per seal_batch call: 16 segments. Whole segments, so only a run's last batch is short.
BATCH_BYTES = 16 * SEGMENT_SIZE_BYTES

Read = Callable[[int], bytes]


def part_sizes(plaintext_size: int, part_bytes: int) -> list[int] | None:
    """The plaintext sizes of the parts an object is written in: None for one request (it fits one part), else
    parts of `part_bytes` — more if 10,000 of them would not hold the object — and a shorter last one. ValueError
    for an object S3 cannot hold in 10,000 parts of at most 5 GiB."""
    if plaintext_size < 0 or not MIN_PART_BYTES <= part_bytes <= largest_plaintext_within(MAX_STORED_PART_BYTES):
        raise ValueError("the part size must be 5 MiB .. 5 GiB (stored)")
    if plaintext_size <= part_bytes:
        return None
    needed = -(-plaintext_size // MAX_PARTS)
    size = max(part_bytes, -(-needed // SEGMENT_SIZE_BYTES) * SEGMENT_SIZE_BYTES)
    count = -(-plaintext_size // size)
    sizes = [size] * (count - 1) + [plaintext_size - size * (count - 1)]
    if ciphertext_size(size) > MAX_STORED_PART_BYTES:
        raise ValueError("the object is too large for 10,000 parts of at most 5 GiB")
    return sizes


@dataclass(frozen=True)
class MultipartPlan:
    """Every part of a multipart-layout object, and the trailer that ends its last part."""
    table: PartTable
    trailer: bytes

    def stored_part_size(self, index: int) -> int:
        """The stored size of part `index` (0-based): its sealed segments, plus the trailer for the last one."""
        part = self.table.parts[index]
        return part.stored_size + (len(self.trailer) if index == len(self.table.parts) - 1 else 0)


def multipart_plan(keys: MultipartKeys, sizes: list[int]) -> MultipartPlan:
    """Part numbers 1..N with fresh salts, the table with M = N and its sealed trailer."""
    table = PartTable(tuple(PartEntry(number, size, secrets.token_bytes(PART_SALT_SIZE_BYTES))
                            for number, size in enumerate(sizes, start=1)), len(sizes))
    trailer = seal_trailer(keys, table)
    if table.parts[-1].stored_size + trailer_size(table) > MAX_STORED_PART_BYTES:
        raise ValueError("the last part and the part table would exceed 5 GiB")
    return MultipartPlan(table, trailer)


def seal_run(read: Read, length: int, key: ObjectKey, part_number: int = 0) -> Iterator[bytearray]:
    """The sealed segments of `length` plaintext bytes taken from `read` (a one-request object, part_number 0,
    or one part of a multipart-layout object under its part key), batch by batch. The last batch is sealed
    final. A `read` that ends early raises EOFError: nothing short is ever sealed as final."""
    index, left = 0, length
    while True:
        take = min(BATCH_BYTES, left)
        data = read_exactly(read, take)
        left -= take
        yield seal_batch(key, index, data, left == 0, part_number)
        if left == 0:
            return
        index += take // SEGMENT_SIZE_BYTES


def read_exactly(read: Read, length: int) -> bytes:
    pieces, got = [], 0
    while got < length:
        piece = read(length - got)
        if not piece:
            raise EOFError("the plaintext ended early")
        pieces.append(piece)
        got += len(piece)
    return b"".join(pieces)
