from __future__ import annotations

import pytest

from gateway.numerals import DEFAULT_CAP, decimal


@pytest.mark.parametrize("text, value", [
    ("0", 0), ("7", 7), ("0007", 7), ("18446744073709551616", DEFAULT_CAP), ("9" * 5000, DEFAULT_CAP),
    ("0" * 5000 + "12", 12), ("123", 123)])
def test_numerals(text: str, value: int) -> None:
    assert decimal(text) == value


@pytest.mark.parametrize("text", ["", "+1", "-1", " 1", "1 ", "1_0", "\u0661", "\u00b2", "0x10", "1.0", "1e3"])
def test_not_numerals(text: str) -> None:
    assert decimal(text) is None


def test_cap() -> None:
    assert decimal("10001", cap=10_000) == 10_000
    assert decimal("10000", cap=10_000) == 10_000
    assert decimal("9999", cap=10_000) == 9999
