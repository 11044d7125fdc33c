"""Logging: JSON lines on stdout (or text for a terminal), and a separate audit stream.

Structured fields travel in `extra={"fields": {...}}`. Nothing here ever receives a secret: callers log
access key ids, never secret keys, signatures, Authorization headers or data keys.
"""
from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

AUDIT_LOGGER = "envelope.audit"

# The object store's x-amz-request-id of the last upstream call in this request's task, for the access log.
upstream_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("upstream_request_id",
                                                                                 default=None)


# Characters that end or rewrite a line for some reader of the log: C0 and C1 controls, DEL, and the Unicode
# line and paragraph separators (str.splitlines() and many log viewers break lines there). JSON escapes only C0.
_LINE_BREAKERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# What json.dumps(ensure_ascii=False) leaves raw: the line breakers above C0, and lone surrogates (undecodable
# bytes that surrogateescape kept), which would fail the write to a UTF-8 stream.
_JSON_RAW = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# A text field value that needs quoting: empty, or holding a space, a quote, a backslash or "=" (which would let a
# value pose as further fields).
_NEEDS_QUOTES = re.compile(r'^$|[\s"\\=]')


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def _printable(text: str) -> str:
    """One line whatever the text holds: line breakers and lone surrogates escaped."""
    text = _LINE_BREAKERS.sub(_escape_char, text)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _text_value(value: object) -> str:
    text = str(value)
    if _NEEDS_QUOTES.search(text):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return _printable(text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        text = json.dumps(entry, ensure_ascii=False, default=str)
        return _JSON_RAW.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


class TextFormatter(logging.Formatter):
    """For a terminal: `time level logger message key=value ...`, every part escaped onto one line (a key, a
    header value or an exception message can hold CR, LF or other line breakers). A traceback keeps its
    lines, each indented: only a record's own line starts at the margin."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        text = _printable(super().formatMessage(record))
        return text + (" " + " ".join(f"{_printable(str(k))}={_text_value(v)}" for k, v in fields.items())
                       if fields else "")

    def formatException(self, ei: Any) -> str:
        return "\n".join("  " + _printable(line) for line in super().formatException(ei).split("\n"))


def configure(level: str = "INFO", fmt: str = "json", audit_file: Path | None = None) -> None:
    formatter: logging.Formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Library loggers that would log request details at INFO (aiohttp's access log is off; botocore is chatty).
    for noisy in ("botocore", "aiobotocore", "aioboto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    audit = logging.getLogger(AUDIT_LOGGER)
    audit_handler = logging.FileHandler(audit_file) if audit_file else logging.StreamHandler(sys.stderr)
    audit_handler.setFormatter(JsonFormatter())
    audit.handlers[:] = [audit_handler]
    audit.setLevel(logging.INFO)
    audit.propagate = False  # its own stream, never mixed into the access log


class Occasional:
    """A warning that may happen a great deal (one per refused connection, under attack): logged at most once
    per interval, with the number of occurrences it stands for; metrics count every one."""

    def __init__(self, logger: logging.Logger, interval_seconds: float = 60.0) -> None:
        self._logger = logger
        self._interval = interval_seconds
        self._next = 0.0
        self._count = 0

    def warning(self, message: str, *args: object) -> None:
        """Logs `message % (count, *args)`, or only counts it until the interval has passed."""
        self._count += 1
        now = time.monotonic()
        if now >= self._next:
            self._logger.warning(message, self._count, *args)
            self._count = 0
            self._next = now + self._interval


def audit(event: str, outcome: str, **fields: Any) -> None:
    """One audit record: a key operation or an integrity failure (principal, bucket, key, KMS key, outcome)."""
    logging.getLogger(AUDIT_LOGGER).info(event, extra={"fields": {"event": event, "outcome": outcome, **fields}})
