"""Integers read from text as HAProxy's C reads them (``strtol``, ``atoi``): a number of any length
saturates where C's ``long`` ends, instead of what Python's ``int()`` does with more than 4300 digits
(a ValueError).  Used wherever a configuration line or a runtime API request carries a number.
"""

from __future__ import annotations

LONG_MAX = 2**63 - 1  # where strtol() stops
LONG_MIN = -(2**63)
INT_MAX = 2**31 - 1  # HAProxy keeps most of its numbers in C ints


def decimal(digits: str, limit: int = LONG_MAX) -> int:
    """The value of a string of decimal digits, at most ``limit``, as ``strtol`` saturates."""
    significant = digits.lstrip("0")
    if len(significant) > len(str(limit)):
        return limit
    return min(int(significant or "0"), limit)


def signed(text: str) -> int:
    """``[+-]digits`` as ``strtol`` reads it: saturated at ``LONG_MIN`` and ``LONG_MAX``."""
    magnitude = decimal(text.lstrip("+-"), LONG_MAX + (text.startswith("-")))
    return -magnitude if text.startswith("-") else magnitude


def atoi(text: str) -> int:
    """glibc's ``atoi``: ``(int) strtol(text, NULL, 10)``, so past a C int the low 32 bits of the
    saturated ``long`` (-1 for a huge positive number, 0 for a huge negative one)."""
    value = signed(text)
    return (value + 2**31) % 2**32 - 2**31
