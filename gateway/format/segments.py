"""Sealing and opening batches of v1 segments. See docs/FORMAT.md, "Body" and "Nonces".

Each segment is AES-256-GCM(object_key, nonce_i, plaintext_i, aad = b"") = ciphertext ‖ tag(16). A batch is a
run of consecutive segments handled in one call: the gateway runs one call per ~1–4 MiB in a thread pool, so
the loops below do no per-segment allocation beyond the 12-byte nonce: AESGCM.encrypt_into / decrypt_into
write straight into one preallocated bytearray through memoryview slices.

A batch's input may be one buffer or a list of pieces (the chunks as the network delivered them): a segment that
lies within one piece is read in place, and only a segment that straddles two pieces is copied, into a scratch
buffer. This runs in the crypto threads, so the event loop never copies a body into batches itself.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

from cryptography.exceptions import InvalidTag

from gateway import errors
from gateway.format.envelope import ObjectKey
from gateway.format.sizes import MAX_SEGMENTS, SEALED_SEGMENT_SIZE_BYTES, SEGMENT_SIZE_BYTES, TAG_SIZE_BYTES

_AAD = b""
_FINAL_FLAG = 0x01
_MAX_PART_NUMBER = 0xFFFFFFFF


def _nonce(prefix: bytes, index: int, final: bool) -> bytes:
    """part_number (uint32 BE) ‖ segment index (uint56 BE) ‖ final flag (u8).

    Why this is unique: every object has its own key (HKDF of the DEK with a fresh 32-byte salt), so within a key
    a counter suffices; the index never repeats within one (part of an) object, and the final flag makes the
    last segment's nonce differ from the nonce the same index would have mid-stream. Opening a segment at a
    different position, or opening a mid-stream segment as the last one (truncation at a segment boundary), or
    the real last one as mid-stream (extension), therefore fails its tag.
    """
    return prefix + ((index << 8) | (_FINAL_FLAG if final else 0)).to_bytes(8, "big")


def _prefix(part_number: int) -> bytes:
    if not 0 <= part_number <= _MAX_PART_NUMBER:
        raise ValueError("part number must fit in 32 bits")
    return part_number.to_bytes(4, "big")


Buffer = bytes | bytearray | memoryview


def _byte_view(data: Buffer) -> memoryview:
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1 or not view.c_contiguous:
        view = view.cast("B") if view.c_contiguous else memoryview(view.tobytes())
    return view


def _pieces(data: Buffer | Sequence[Buffer]) -> list[memoryview]:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return [_byte_view(data)]
    return [view for view in map(_byte_view, data) if len(view)]


def _segments(pieces: list[memoryview], segment_bytes: int) -> Iterator[memoryview]:
    """Consecutive views of `segment_bytes` (the last one may be shorter) over the concatenation of `pieces`.
    A view is valid until the next one is taken (straddling segments share one scratch buffer)."""
    scratch: memoryview | None = None
    index, offset, count = 0, 0, len(pieces)
    while index < count:
        piece = pieces[index]
        if len(piece) - offset >= segment_bytes:
            yield piece[offset:offset + segment_bytes]
            offset += segment_bytes
            if offset == len(piece):
                index, offset = index + 1, 0
            continue
        if scratch is None:
            scratch = memoryview(bytearray(segment_bytes))
        filled = 0
        while filled < segment_bytes and index < count:
            piece = pieces[index]
            take = min(segment_bytes - filled, len(piece) - offset)
            scratch[filled:filled + take] = piece[offset:offset + take]
            filled, offset = filled + take, offset + take
            if offset == len(piece):
                index, offset = index + 1, 0
        yield scratch[:filled]


def seal_batch(key: ObjectKey, first_index: int, plaintext: Buffer | Sequence[Buffer], final: bool,
               part_number: int = 0) -> bytearray:
    """Seal consecutive segments starting at `first_index`; returns their stored bytes.

    `plaintext` is one buffer or a list of pieces, read as their concatenation. Unless `final`, it must be
    whole segments (a multiple of S). If `final`, the last segment (short, full, or — only for an empty object,
    first_index 0 — empty) gets the final flag.
    """
    pieces = _pieces(plaintext)
    size = sum(map(len, pieces))
    if first_index < 0:
        raise ValueError("segment index must not be negative")
    if final:
        if size == 0 and first_index != 0:
            # An empty segment after others would be an object no reader accepts (see sizes.plaintext_size):
            # the caller must mark the batch holding the last bytes as final instead.
            raise ValueError("only an empty object may end with an empty segment")
        count = max(1, -(-size // SEGMENT_SIZE_BYTES))
    else:
        if size % SEGMENT_SIZE_BYTES:
            raise ValueError("a non-final batch must be whole segments")
        count = size // SEGMENT_SIZE_BYTES
    if first_index + count > MAX_SEGMENTS:
        raise ValueError("segment index exceeds 56 bits")
    prefix = _prefix(part_number)
    out = bytearray(size + TAG_SIZE_BYTES * count)
    sealed = memoryview(out)
    encrypt_into = key._aead.encrypt_into
    last = count - 1
    segments = _segments(pieces, SEGMENT_SIZE_BYTES) if size else iter([memoryview(b"")] * count)
    for j, segment in enumerate(segments):
        c = j * SEALED_SEGMENT_SIZE_BYTES
        encrypt_into(_nonce(prefix, first_index + j, final and j == last), segment, _AAD,
                     sealed[c:c + len(segment) + TAG_SIZE_BYTES])
    return out


def open_batch(key: ObjectKey, first_index: int, ciphertext: Buffer | Sequence[Buffer], final_index: int,
               part_number: int = 0) -> bytearray:
    """Open consecutive sealed segments starting at `first_index`; returns their plaintext, all or nothing.

    `ciphertext` is one buffer or a list of pieces, read as their concatenation.

    `final_index` is the index of the object's final segment (from its stored size): that segment, and only it,
    is opened with the final flag. The framing is checked before any decryption: every segment before the final
    one must be full, the final one must hold more than a tag (exactly a tag only when it is segment 0 — the empty
    object), and no segment may follow it. Any failure is TamperedCiphertext, and no plaintext is returned.
    """
    pieces = _pieces(ciphertext)
    size = sum(map(len, pieces))
    if first_index < 0 or final_index < 0:
        raise ValueError("segment index must not be negative")
    if size == 0:
        raise errors.TamperedCiphertext("The stored object has no segment where one was expected.")
    count = -(-size // SEALED_SEGMENT_SIZE_BYTES)
    last_index = first_index + count - 1
    last_sealed = size - (count - 1) * SEALED_SEGMENT_SIZE_BYTES
    if last_index > final_index:
        raise errors.TamperedCiphertext("The stored object has data after its final segment.")
    if last_index < final_index and last_sealed != SEALED_SEGMENT_SIZE_BYTES:
        raise errors.TamperedCiphertext("A segment before the final one is short (truncated object).")
    if last_index == final_index and last_sealed <= TAG_SIZE_BYTES and not (final_index == 0
                                                                             and last_sealed == TAG_SIZE_BYTES):
        raise errors.TamperedCiphertext("The stored object's final segment is too short.")
    if last_index >= MAX_SEGMENTS:
        raise ValueError("segment index exceeds 56 bits")
    prefix = _prefix(part_number)
    out = bytearray(size - TAG_SIZE_BYTES * count)
    opened = memoryview(out)
    decrypt_into = key._aead.decrypt_into
    try:
        for j, segment in enumerate(_segments(pieces, SEALED_SEGMENT_SIZE_BYTES)):
            index = first_index + j
            p = j * SEGMENT_SIZE_BYTES
            decrypt_into(_nonce(prefix, index, index == final_index), segment, _AAD,
                         opened[p:p + len(segment) - TAG_SIZE_BYTES])
    except InvalidTag:
        # decrypt_into may have written unauthenticated plaintext before the tag check: wipe it.
        opened[:] = bytes(len(out))
        raise errors.TamperedCiphertext("A segment of the stored object failed authentication.") from None
    return out
