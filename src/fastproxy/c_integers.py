"""Integers read from text as HAProxy's C reads them (``strtol``, ``atoi``): a number of any length
saturates where C's ``long`` ends, instead of what Python's ``int()`` does with more than 4300 digits
(a ValueError).  Used wherever a configuration line or a runtime API request carries a number.
"""

from __future__ import annotations

import re

LONG_MAX = 2**63 - 1  # where strtol() stops
LONG_MIN = -(2**63)
INT_MAX = 2**31 - 1  # HAProxy keeps most of its numbers in C ints
_LEADING_NUMBER = re.compile(r"[ \t\n\v\f\r]*([-+]?[0-9]+)")  # what strtol() reads of a text


def decimal(digits: str, limit: int = LONG_MAX) -> int:
    """The value of a string of decimal digits, at most ``limit``, as ``strtol`` saturates."""
    significant = digits.lstrip("0")
    if len(significant) > len(str(limit)):
        return limit
    return min(int(significant or "0"), limit)


def based(digits: str, base: int, limit: int = LONG_MAX) -> int:
    """Digits in base 8, 10 or 16 (without a ``0x`` prefix), at most ``limit``, as ``strtol`` saturates:
    bases of a power of two have no digit limit in ``int()``, base ten goes through ``decimal``."""
    return decimal(digits, limit) if base == 10 else min(int(digits or "0", base), limit)


def c_int(value: int) -> int:
    """What a C ``int`` keeps of a ``long``: its low 32 bits, signed."""
    return (value + 2**31) % 2**32 - 2**31


def signed(text: str) -> int:
    """``[+-]digits`` as ``strtol`` reads it: saturated at ``LONG_MIN`` and ``LONG_MAX``."""
    magnitude = decimal(text.lstrip("+-"), LONG_MAX + (text.startswith("-")))
    return -magnitude if text.startswith("-") else magnitude


def within_long(text: str) -> bool:
    """Whether ``[+-]digits`` fits a C ``long`` (``strtol`` would not saturate it)."""
    magnitude = text.lstrip("+-").lstrip("0")
    if len(magnitude) > len(str(LONG_MAX)):
        return False
    return int(magnitude or "0") <= LONG_MAX + text.startswith("-")


def atoi(text: str) -> int:
    """glibc's ``atoi``: ``(int) strtol(text, NULL, 10)``, so past a C int the low 32 bits of the
    saturated ``long`` (-1 for a huge positive number, 0 for a huge negative one); it reads the
    leading spaces, sign and digits and stops at the first other character (none: 0)."""
    match = _LEADING_NUMBER.match(text)
    return c_int(signed(match[1])) if match else 0
