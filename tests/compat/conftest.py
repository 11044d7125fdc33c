"""`make compat`: the compatibility matrix and its report (docs/COMPATIBILITY.md via --compat-report)."""
from __future__ import annotations

from pathlib import Path

from matrix import MATRIX


def pytest_addoption(parser):
    parser.addoption("--compat-report", default=None, metavar="PATH",
                     help="write the matrix (clients × scenarios) as Markdown to PATH")


def pytest_sessionfinish(session, exitstatus):
    path = session.config.getoption("--compat-report")
    if path and MATRIX.rows:
        Path(path).write_text(MATRIX.markdown())
