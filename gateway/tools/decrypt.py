"""`envelope-gateway decrypt`: an object's plaintext from its stored body and metadata, without a gateway.

The escape hatch, and the proof that docs/FORMAT.md is complete: KMS credentials and the stored bytes suffice.
All cryptography is the format core's; this module reads the body once, front to back, in batches of whole
sealed segments, and writes each batch's plaintext only after the batch was authenticated. Memory stays at a
couple of batches (plus, for the multipart layout, the part table) whatever the object's size.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from gateway import errors
from gateway.format import multipart
from gateway.format.envelope import (FLAG_MULTIPART_LAYOUT, Header, MultipartKeys, encryption_context,
                                     open_multipart_keys, open_object_key, parse_metadata)
from gateway.format.reading import (Run, object_run, one_request_plaintext_size, part_runs, table_from_tail,
                                    table_tail_fetch_size, table_tail_refetch_size)
from gateway.format.sizes import SEALED_SEGMENT_SIZE_BYTES, covering_segments
from gateway.s3.multipart_xml import multipart_part_count
from gateway.tools.datakey import Unwrapper, unwrap_data_key
from gateway.tools.sources import Readable, StoredBody, StoredObject, check_body_size

# Segments opened per batch: 64, 4 MiB of stored bytes. Memory is this twice (sealed and opened), at any size.
BATCH_SEGMENTS = 64

Write = Callable[[bytearray], object]


def decrypt_object(head: StoredObject, body: StoredBody, bucket: str, key: str, unwrappers: Sequence[Unwrapper],
                   write: Write) -> int:
    """Unwrap the object's data key under the encryption context of `bucket`/`key` (the name the object was
    written under: KMS refuses any other) and decrypt the whole body into `write`; returns the plaintext size."""
    check_body_size(head, body)
    try:
        header, wrapped = parse_metadata(head.metadata)
    except errors.NotEncrypted:
        raise errors.NotEncrypted(
            "The object's metadata has no envelope-header: it was not written through the gateway, or the metadata "
            "was read through the gateway (which hides it) rather than from the store itself.") from None
    dek = unwrap_data_key(wrapped, encryption_context(bucket, key), unwrappers)
    return decrypt_body(dek, header, head.etag, body, write)


def decrypt_body(dek: bytes, header: Header, etag: str, body: StoredBody, write: Write,
                 batch_segments: int = BATCH_SEGMENTS) -> int:
    """The whole plaintext of a stored body, given its (not yet verified) data key, header and ETag, written in
    order; returns its size. The key commitment is checked before anything is opened; each batch is written only
    once authenticated. An integrity failure is TamperedCiphertext; whatever the failure, what was written by
    then is a true prefix of the plaintext: a caller that needs all or nothing discards it (gateway.tools.output)."""
    trailer_bytes = padding_bytes = 0
    if header.flags & FLAG_MULTIPART_LAYOUT:
        keys = open_multipart_keys(dek, header)
        table = _part_table(keys, body, multipart_part_count(etag))
        size = table.plaintext_size
        # The whole object, empty parts included: every stored segment is authenticated (FORMAT.md §15.7 step 6).
        runs = part_runs(keys, multipart.covering_parts(0, size - 1, table))
        trailer_bytes, padding_bytes = multipart.trailer_size(table), multipart.padding_size(table)
    else:
        size = one_request_plaintext_size(body.size_bytes)
        runs = [object_run(open_object_key(dek, header), covering_segments(0, size - 1, size))]
    stream = body.stream()
    for run in runs:
        _open_run(run, stream, write, batch_segments)
    # The table was authenticated from the tail; the padding before it must be zero (§15.7 step 5).
    multipart.check_padding(b"".join(_read_exactly(stream, trailer_bytes))[:padding_bytes])
    return size


def _part_table(keys: MultipartKeys, body: StoredBody, stored_part_count: int | None) -> multipart.PartTable:
    tail = body.tail(table_tail_fetch_size(body.size_bytes, stored_part_count))
    refetch = table_tail_refetch_size(tail, body.size_bytes)
    if refetch is not None:
        tail = body.tail(refetch)
    return table_from_tail(keys, tail, body.size_bytes, stored_part_count)


def _open_run(run: Run, stream: Readable, write: Write, batch_segments: int) -> None:
    index, left = run.first_index, run.stored_bytes
    while left:
        want = min(left, batch_segments * SEALED_SEGMENT_SIZE_BYTES)  # only a run's last batch may be shorter
        write(run.open(index, _read_exactly(stream, want)))
        index, left = index + batch_segments, left - want


def _read_exactly(stream: Readable, length: int) -> list[bytes]:
    """`length` bytes as the reads returned them (open_batch takes pieces, so nothing is joined)."""
    pieces, got = [], 0
    while got < length:
        piece = stream.read(length - got)
        if not piece:
            raise errors.TamperedCiphertext("The stored object is shorter than its recorded size.")
        pieces.append(piece)
        got += len(piece)
    return pieces
