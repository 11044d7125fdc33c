"""Logging: JSON lines on stdout (or text for a terminal), and a separate audit stream.

Structured fields travel in `extra={"fields": {...}}`. Nothing here ever receives a secret: callers log
access key ids, never secret keys, signatures, Authorization headers or data keys.
"""
from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

AUDIT_LOGGER = "envelope.audit"

# The object store's x-amz-request-id of the last upstream call in this request's task, for the access log.
upstream_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("upstream_request_id",
                                                                                 default=None)


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
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        text = super().format(record)
        return text + (" " + " ".join(f"{k}={v}" for k, v in fields.items()) if fields else "")


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


def audit(event: str, outcome: str, **fields: Any) -> None:
    """One audit record: a key operation or an integrity failure (principal, bucket, key, KMS key, outcome)."""
    logging.getLogger(AUDIT_LOGGER).info(event, extra={"fields": {"event": event, "outcome": outcome, **fields}})
