"""Log lines stay one line and keep their fields apart whatever a client put into a key or a header."""
from __future__ import annotations

import json
import logging
import sys

from gateway.observability.logs import JsonFormatter, Occasional, TextFormatter

HOSTILE = "a\rb\nc\x00d\x1be\x7ff\x85g\u2028h\u2029i\udc80j"


def _record(message: str = "GET %s", args: tuple = (HOSTILE,), **fields: object) -> logging.LogRecord:
    record = logging.LogRecord("gateway.access", logging.INFO, __file__, 1, message, args, None)
    record.fields = fields
    return record


def test_text_lines_escape_every_line_breaker_in_message_and_fields():
    line = TextFormatter().format(_record(key=HOSTILE))
    assert line.splitlines() == [line]
    assert all(ch not in line for ch in "\r\n\x00\x1b\x7f\x85\u2028\u2029")
    line.encode("utf-8")  # no lone surrogate left to fail the write
    assert "\\x0d" in line and "\\u2028" in line


def test_text_field_values_cannot_pose_as_fields():
    line = TextFormatter().format(_record("x", (), key="k status=200", empty=""))
    assert 'key="k status=200"' in line and 'empty=""' in line
    assert " status=200" not in line.replace('"k status=200"', "")


def test_text_tracebacks_keep_lines_but_only_the_record_starts_at_the_margin():
    try:
        raise ValueError("forged\n2026-01-01 INFO gateway.access fake")
    except ValueError:
        record = _record("failed", ())
        record.exc_info = sys.exc_info()
    lines = TextFormatter().format(record).split("\n")
    assert len(lines) > 1 and all(line.startswith("  ") for line in lines[1:])


def test_json_lines_escape_what_json_leaves_raw():
    line = JsonFormatter().format(_record(key=HOSTILE))
    assert line.splitlines() == [line]
    line.encode("utf-8")
    assert json.loads(line)["key"][:7] == HOSTILE[:7]


def test_occasional_logs_once_per_interval_with_the_count(caplog):
    occasional = Occasional(logging.getLogger("test.occasional"), interval_seconds=3600)
    with caplog.at_level(logging.WARNING, "test.occasional"):
        for _ in range(5):
            occasional.warning("%d happened")
    assert [r.getMessage() for r in caplog.records] == ["1 happened"]
