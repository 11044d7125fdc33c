"""A one-line progress display on standard error, redrawn in place when it is a terminal and silent otherwise
(a log file or a pipe gets only the final summary)."""
from __future__ import annotations

import sys
import time
from typing import TextIO

_REDRAW_SECONDS = 0.2


class Progress:
    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._enabled = self._stream.isatty()
        self._drawn_at = 0.0
        self._width = 0

    def show(self, text: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not self._enabled or (not force and now - self._drawn_at < _REDRAW_SECONDS):
            return
        self._drawn_at = now
        self._stream.write("\r" + text.ljust(self._width))
        self._width = len(text)
        self._stream.flush()

    def done(self) -> None:
        if self._enabled and self._width:
            self._stream.write("\n")
            self._stream.flush()
