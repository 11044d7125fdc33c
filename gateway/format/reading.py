"""What a reader opens, in which order, and how it finds a multipart-layout object's part table (FORMAT.md §9,
§15.7). Pure: the caller fetches the bytes (the gateway from the store over aiohttp, `envelope-gateway decrypt`
from a file or through boto3) and hands them in.

A *run* is consecutive stored segments opened with one key: the covering window of a one-request object, or the
covering segments of one part of a multipart-layout object. A reader cuts runs into batches of whole sealed
segments however it likes, and opens each batch with `Run.open`, which applies the run's key, part number and
final segment.
"""
from __future__ import annotations

from dataclasses import dataclass

from gateway import errors
from gateway.format import multipart
from gateway.format.envelope import MultipartKeys, ObjectKey
from gateway.format.segments import Buffer, open_batch
from gateway.format.sizes import SegmentSpan, plaintext_size

# Part count assumed for the first fetch of a table when the ETag has no `-M` (a single-request copy made around
# the gateway): a larger table costs a second fetch, a smaller one is still fetched once.
_UNKNOWN_PART_COUNT_GUESS = 1000


@dataclass(frozen=True)
class Run:
    """Consecutive stored segments opened with one key: the window of a one-request object, or one part's."""
    stored_bytes: int
    first_index: int
    final_index: int  # the index of the (part's) final segment: only it is opened with the final flag
    key: ObjectKey
    part_number: int

    def open(self, first_index: int, sealed: Buffer | list[Buffer]) -> bytearray:
        """Plaintext of whole sealed segments of this run starting at segment `first_index` (all or nothing)."""
        return open_batch(self.key, first_index, sealed, self.final_index, self.part_number)


def object_run(key: ObjectKey, span: SegmentSpan) -> Run:
    """The run of a one-request object's covering segments."""
    return Run(span.ciphertext_end - span.ciphertext_start + 1, span.first_segment, span.final_segment, key, 0)


def part_runs(keys: MultipartKeys, span: multipart.MultipartSpan) -> list[Run]:
    """One run per part that covers a range of a multipart-layout object, in stored order."""
    return [Run(p.span.ciphertext_end - p.span.ciphertext_start + 1, p.span.first_segment, p.span.final_segment,
                keys.part_key(p.part.number, p.part.salt), p.part.number) for p in span.parts]


def one_request_plaintext_size(stored_total: int) -> int:
    """n of a one-request object of `stored_total` stored bytes; a size no writer produces is tampering (§7)."""
    try:
        return plaintext_size(stored_total)
    except ValueError:
        raise errors.TamperedCiphertext("The stored object's size is impossible for its format.") from None


def multipart_plaintext_size(stored_total: int, stored_part_count: int) -> int:
    """n of a multipart-layout object from its stored size and the ETag's `-M`, without its table (§15.5)."""
    try:
        return multipart.plaintext_size(stored_total, stored_part_count)
    except ValueError:
        raise errors.TamperedCiphertext("The stored object's size is impossible for its format.") from None


# --- the part table (§15.7 step 4) ----------------------------------------------------------------------------
def table_tail_fetch_size(stored_total: int, stored_part_count: int | None) -> int:
    """How many of the object's last bytes to fetch first for its part table: the table of M (or N = M − 1)
    parts plus the most padding there can be before it, so that one fetch usually brings the padding too."""
    guess = stored_part_count or _UNKNOWN_PART_COUNT_GUESS
    return min(stored_total, multipart.table_tail_size(guess) + multipart.PER_PART_BYTES * guess)


def table_tail_refetch_size(tail: bytes, stored_total: int) -> int | None:
    """None when `tail` holds the whole table its clear count announces; otherwise how many last bytes to fetch
    instead. (A count that needs more than the object has is left to `table_from_tail` to refuse.)"""
    need = multipart.table_tail_size(multipart.tail_part_count(tail))
    if need <= len(tail) or len(tail) >= stored_total:
        return None
    return min(stored_total, need)


def table_from_tail(keys: MultipartKeys, tail: bytes, stored_total: int, stored_part_count: int | None
                    ) -> multipart.PartTable:
    """The authenticated part table from the object's last bytes, checked against the stored size and the ETag's
    `-M`; the padding too when the tail reaches back over it. TamperedCiphertext on any mismatch."""
    table = multipart.open_trailer(keys, tail, stored_total, stored_part_count)
    need = multipart.table_tail_size(len(table.parts))
    padding = multipart.padding_size(table)
    if len(tail) >= need + padding:
        multipart.check_padding(tail[len(tail) - need - padding:len(tail) - need])
    return table
