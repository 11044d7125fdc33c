"""Where plaintext goes: standard output, or a file that appears only when complete.

A file is written as a temporary file beside the target (same directory, so the final rename is atomic) and
renamed over the target only when the whole write succeeded; on any failure the temporary file is removed. A
failed decrypt therefore never leaves a complete-looking output, nor touches an existing file of that name.
The file is created with mode 0600 (mkstemp): it holds decrypted data. On standard output a failure cannot take
back what was written (every byte of it authenticated): the exit code says it is incomplete.
"""
from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from gateway import errors


@contextmanager
def plaintext_output(path: str | None, option: str = "--out") -> Iterator[BinaryIO]:
    """A binary stream for the plaintext: `path` (committed when the block ends without an exception) or, for
    None or "-", standard output. `option` names the path in messages (share writes its manifest this way)."""
    if path is None or path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    target = Path(path)
    try:
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    except OSError as exc:
        raise errors.InvalidArgument(f"Cannot write {option} {path}: {exc.strerror}.") from None
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
