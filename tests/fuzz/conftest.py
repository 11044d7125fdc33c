"""Fuzz properties: every parser a client or a store can reach, fed arbitrary input.

Each test here is a hypothesis property of one pure module: valid inputs round-trip, and any input gives a value
or the module's own error type (an `S3Error` subclass), never another exception. Write them with `@given` and no
`max_examples`: this file decides how many examples each gets.

- `make test` runs them with no setting: 200 examples each, in CI time.
- ENVELOPE_FUZZ_TOTAL shares a total out evenly over the properties of this session; the examples actually run
  are counted, and the session fails if fewer than the total ran.
- ENVELOPE_FUZZ_EACH sets the examples per property directly, and ENVELOPE_FUZZ_COUNTS names a file that gets
  the counts as JSON: `make fuzz` (tests/fuzz/run.py) runs one session per core that way and adds them up.
"""
from __future__ import annotations

import functools
import json
import math
import os
from collections import Counter

import pytest
from hypothesis import HealthCheck, settings

_DEFAULT_EXAMPLES = 200
_ran: Counter[str] = Counter()


def _total() -> int:
    return int(os.environ.get("ENVELOPE_FUZZ_TOTAL", "0"))


def _each() -> int:
    return int(os.environ.get("ENVELOPE_FUZZ_EACH", "0"))


def _counting(test_id: str, inner):
    @functools.wraps(inner)
    def counted(*args, **kwargs):
        _ran[test_id] += 1
        return inner(*args, **kwargs)
    return counted


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    properties = [item for item in items if getattr(getattr(item, "obj", None), "is_hypothesis_test", False)
                  and "tests/fuzz/" in str(item.path).replace(os.sep, "/")]
    if not properties:
        return
    total = _total()
    each = _each() or (math.ceil(total / len(properties)) if total else _DEFAULT_EXAMPLES)
    for item in properties:
        test = item.obj
        # The public hooks: @settings applied to a @given test, and .hypothesis.inner_test (the body per example).
        settings(test._hypothesis_internal_use_settings, max_examples=each, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                        HealthCheck.data_too_large])(test)
        test.hypothesis.inner_test = _counting(item.nodeid, test.hypothesis.inner_test)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if not _ran:
        return
    failed = sum(1 for report in terminalreporter.stats.get("failed", []) if report.nodeid in _ran)
    terminalreporter.write_line(
        f"fuzz: {sum(_ran.values()):,} examples over {len(_ran)} properties; "
        f"{failed} properties failed (an unexpected exception type or a broken round trip)")
    if _total() or _each():
        for test_id, count in sorted(_ran.items()):
            terminalreporter.write_line(f"  {count:>9,}  {test_id}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    counts = os.environ.get("ENVELOPE_FUZZ_COUNTS")
    if counts:
        with open(counts, "w") as out:
            json.dump({"examples": dict(_ran), "exitstatus": int(session.exitstatus)}, out)
    total = _total()
    if total and sum(_ran.values()) < total and session.exitstatus == 0:
        session.exitstatus = 1  # fewer examples ran than `make fuzz` promises
