"""Incremental decoder for aws-chunked request bodies (`Content-Encoding: aws-chunked`). Pure (no I/O).

Wire formats (x-amz-content-sha256 says which one):
  STREAMING-AWS4-HMAC-SHA256-PAYLOAD          `<hex>;chunk-signature=<sig>\\r\\n<data>\\r\\n` ...
                                              `0;chunk-signature=<sig>\\r\\n\\r\\n`
  STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER  the same, but the final chunk is followed by trailer lines and
                                              `x-amz-trailer-signature:<sig>\\r\\n`, then `\\r\\n`
  STREAMING-UNSIGNED-PAYLOAD-TRAILER          `<hex>\\r\\n<data>\\r\\n` ... `0\\r\\n`, trailer lines, `\\r\\n`

Built for throughput: chunk data is never scanned or copied; it comes back as memoryview slices of the fed
buffer (valid while the caller leaves that buffer unmodified). Only chunk-header and trailer lines are
searched and, when split across feeds, buffered, each up to a fixed bound.
"""
from __future__ import annotations

import hashlib
import re

from gateway.errors import IncompleteBody, InvalidRequest, S3Error, SignatureDoesNotMatch
from gateway.s3.sigv4 import EMPTY_SHA256, ChunkSigner

_NEWLINE = re.compile(b"\n")
# 16 hex digits bound the size (and int()'s work) while allowing any object S3 can hold.
_SIGNED_HEADER = re.compile(rb"([0-9a-fA-F]{1,16});chunk-signature=([0-9a-f]{64})")
_UNSIGNED_HEADER = re.compile(rb"[0-9a-fA-F]{1,16}")
_TRAILER_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):([\x20-\x7e\t]*)")
_TRAILER_SIGNATURE = "x-amz-trailer-signature"

_HEADER, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


class AwsChunkedDecoder:
    def __init__(self, chunk_signer: ChunkSigner | None, expect_trailer: bool, decoded_length: int | None,
                 max_chunk_header_bytes: int = 4096, max_trailer_bytes: int = 16384) -> None:
        """`chunk_signer` given: every chunk must carry a valid chained signature (and, with `expect_trailer`,
        the trailer section a valid x-amz-trailer-signature). Without it, chunk extensions are refused."""
        self._signer = chunk_signer
        self._expect_trailer = expect_trailer
        self._decoded_length = decoded_length
        self._max_header = max_chunk_header_bytes
        self._max_trailer = max_trailer_bytes
        self._state = _HEADER
        self._line = bytearray()      # a header/trailer line split across feeds
        self._remaining = 0           # data bytes still to come in the current chunk
        self._crlf_seen = 0           # bytes of the CRLF after the chunk data seen so far
        self._hasher: hashlib._Hash | None = None
        self._claimed = ""            # the current chunk's claimed signature
        self._total = 0               # decoded bytes announced by chunk headers so far
        self._trailer_bytes = 0       # size of the trailer section so far (bounded)
        self._trailer_lines: list[tuple[str, str]] = []
        self._trailer_signature: str | None = None
        self._failed = False

    @property
    def done(self) -> bool:
        """The terminating empty line has been seen (and every signature checked)."""
        return self._state == _DONE

    def feed(self, data: bytes | bytearray | memoryview) -> list[memoryview]:
        """Decode the next bytes of the body; return the payload pieces they complete (possibly none)."""
        if self._failed:
            raise InvalidRequest("The aws-chunked body was already rejected.")
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        try:
            return self._feed(view)
        except S3Error:
            self._failed = True  # the framing position is lost: nothing after an error can be trusted
            raise

    def finish(self) -> dict[str, str]:
        """At end of input: the trailers (lowercased names; x-amz-trailer-signature excluded)."""
        if self._failed:
            raise InvalidRequest("The aws-chunked body was already rejected.")
        if self._state != _DONE:
            what = "its trailing headers" if self._state == _TRAILER else "its final chunk"
            raise IncompleteBody(f"The aws-chunked body ended before {what}.")
        if self._decoded_length is not None and self._total != self._decoded_length:
            raise IncompleteBody("The decoded body length does not match x-amz-decoded-content-length.")
        return dict(self._trailer_lines)

    # --- internals -------------------------------------------------------------------------------------------

    def _feed(self, view: memoryview) -> list[memoryview]:
        out: list[memoryview] = []
        pos, end = 0, len(view)
        while pos < end:
            state = self._state
            if state == _DATA:
                n = min(self._remaining, end - pos)
                piece = view[pos:pos + n]
                # The piece is released before its chunk signature can be checked (the signature covers the
                # whole chunk, up to 1 MiB or more): buffering every chunk would cost memory and a copy. Safe
                # because the caller treats the upload as failed, and aborts the upstream write, on any error
                # this decoder raises later.
                if self._hasher is not None:
                    self._hasher.update(piece)
                out.append(piece)
                pos += n
                self._remaining -= n
                if self._remaining == 0:
                    if self._signer is not None:
                        hasher = self._hasher
                        # Set with the chunk header whenever there is a signer: a missing one is a bug, never a pass.
                        if hasher is None:
                            raise RuntimeError("signed chunk without its hasher")
                        self._signer.verify_chunk(hasher.hexdigest(), self._claimed)
                    self._hasher = None
                    self._state, self._crlf_seen = _DATA_END, 0
            elif state == _DATA_END:
                if view[pos] != b"\r\n"[self._crlf_seen]:
                    raise InvalidRequest("Chunk data is not followed by CRLF: the chunk size is wrong.")
                pos += 1
                self._crlf_seen += 1
                if self._crlf_seen == 2:
                    self._state = _HEADER
            elif state == _HEADER or state == _TRAILER:
                limit = self._max_header if state == _HEADER else self._max_trailer - self._trailer_bytes
                line, pos = self._take_line(view, pos, end, limit)
                if line is None:
                    break  # partial line buffered; wait for more input
                if state == _HEADER:
                    self._on_chunk_header(line)
                else:
                    self._trailer_bytes += len(line) + 2
                    self._on_trailer_line(line)
            else:
                raise InvalidRequest("Data follows the end of the aws-chunked body.")
        return out

    def _take_line(self, view: memoryview, pos: int, end: int, limit: int) -> tuple[bytes | None, int]:
        """The next CRLF-terminated line (without CRLF) and the position after it, or (None, end) when the
        line continues in a later feed. A line (CRLF included) longer than `limit` is refused, so a hostile
        client cannot make us buffer without bound."""
        window_end = pos + limit - len(self._line)
        match = _NEWLINE.search(view, pos, min(end, window_end))
        if match is None:
            if window_end <= end:
                raise InvalidRequest("An aws-chunked header or trailer line is too long.")
            self._line += view[pos:end]
            return None, end
        newline = match.start()
        line = bytes(self._line) + bytes(view[pos:newline]) if self._line else bytes(view[pos:newline])
        self._line.clear()
        if not line.endswith(b"\r"):
            raise InvalidRequest("aws-chunked lines must end with CRLF.")
        return line[:-1], newline + 1

    def _on_chunk_header(self, line: bytes) -> None:
        if self._signer is not None:
            match = _SIGNED_HEADER.fullmatch(line)
            if match is None:
                raise InvalidRequest("Malformed aws-chunked chunk header: expected <hex-size>;chunk-signature=<sig>.")
            size, self._claimed = int(match[1], 16), match[2].decode("ascii")
        else:
            if _UNSIGNED_HEADER.fullmatch(line) is None:
                raise InvalidRequest("Malformed aws-chunked chunk header: expected <hex-size>.")
            size = int(line, 16)
        if self._decoded_length is not None and self._total + size > self._decoded_length:
            # Refused before the chunk's data arrives: the body is longer than announced.
            raise IncompleteBody("The aws-chunked body is longer than x-amz-decoded-content-length.")
        self._total += size
        if size:
            self._remaining = size
            self._hasher = hashlib.sha256() if self._signer is not None else None
            self._state = _DATA
            return
        # The zero-length chunk ends the data; its signature chains on to the trailer's.
        if self._signer is not None:
            self._signer.verify_chunk(EMPTY_SHA256, self._claimed)
        self._state = _TRAILER

    def _on_trailer_line(self, line: bytes) -> None:
        if not line:
            self._end_of_trailers()
            return
        if not self._expect_trailer:
            raise InvalidRequest("The aws-chunked body has trailing headers its x-amz-content-sha256 does not allow.")
        if self._trailer_signature is not None:
            raise InvalidRequest("x-amz-trailer-signature must be the last trailing header.")
        match = _TRAILER_LINE.fullmatch(line)
        if match is None:
            raise InvalidRequest("Malformed trailing header in the aws-chunked body.")
        name, value = match[1].decode("ascii").lower(), match[2].decode("ascii").strip(" \t")
        if name == _TRAILER_SIGNATURE:
            if self._signer is None:
                raise InvalidRequest("A trailer signature was sent with an unsigned aws-chunked body.")
            self._trailer_signature = value
        elif any(name == seen for seen, _ in self._trailer_lines):
            raise InvalidRequest(f"The trailing header {name} is repeated.")
        else:
            self._trailer_lines.append((name, value))

    def _end_of_trailers(self) -> None:
        if self._signer is not None and self._expect_trailer:
            if self._trailer_signature is None:
                raise SignatureDoesNotMatch("The trailing headers carry no x-amz-trailer-signature.")
            self._signer.verify_trailer(self._trailer_lines, self._trailer_signature)
        self._state = _DONE
