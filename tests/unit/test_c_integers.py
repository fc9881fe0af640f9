"""Numbers read as HAProxy's C reads them, whatever their length: a configuration line's or a runtime
API request's number of thousands of digits made Python's int() raise (ValueError: Exceeds the limit)."""

from __future__ import annotations

import pytest

from fastproxy.c_integers import LONG_MAX, LONG_MIN, atoi, decimal, signed


@pytest.mark.parametrize("text, value", [("42", 42), ("-42", -42), ("9" * 5000, -1), ("-" + "9" * 5000, 0),
                                         ("2147483648", -2147483648), ("+7", 7), (" 12abc", 12), ("abc", 0),
                                         ("", 0)])
def test_numbers_are_read_as_c_atoi_reads_them_whatever_their_length(text, value):
    assert atoi(text) == value


def test_a_number_thousands_of_digits_long_saturates_as_strtol():
    assert decimal("9" * 5000) == LONG_MAX and decimal("0" * 5000 + "12") == 12
    assert signed("-" + "9" * 5000) == LONG_MIN and signed("+" + "9" * 30) == LONG_MAX
    assert decimal("9" * 30, 65535) == 65535
