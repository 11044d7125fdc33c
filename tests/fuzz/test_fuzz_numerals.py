from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.numerals import decimal


@given(st.one_of(st.text(), st.text(alphabet="0123456789", min_size=1, max_size=6000)),
       st.integers(min_value=0, max_value=1 << 70))
def test_any_text_is_a_bounded_number_or_none(text: str, cap: int) -> None:
    value = decimal(text, cap)
    assert value is None or 0 <= value <= cap


@given(st.integers(min_value=0, max_value=1 << 64))
def test_numerals_round_trip(value: int) -> None:
    assert decimal(str(value)) == min(value, 2**63)
