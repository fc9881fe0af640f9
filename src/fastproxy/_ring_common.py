"""What both consistent-hash rings share (the compiled ``_ring`` and ``ring.PyHashRing``): the
exception, the validation of arguments and its messages, and how a key becomes bytes.  Kept apart so
that the compiled ring imports it at load time instead of reaching back into ``fastproxy.ring``
(multidict keeps its shared pieces in ``_abc.py`` / ``_compat.py`` the same way)."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping

from .errors import FastproxyError

Key = bytes | bytearray | memoryview | str | int

ALGORITHMS = ("ketama", "maglev")
MAX_POINTS = 1 << 26  # ketama points in one table (12 bytes each, plus the index)
MAX_TABLE_SIZE = 1 << 26  # maglev entries (4 bytes each)
MAX_WEIGHT = (1 << 32) - 1
_MASK = (1 << 64) - 1


class EmptyRingError(FastproxyError, LookupError):
    """A lookup on a ring with no server of positive weight."""


def _empty() -> EmptyRingError:
    return EmptyRingError("the hash ring has no server with a positive weight to map keys to")


_INT_MIN = -(1 << 63)


def _key_bytes(key: Key) -> bytes:
    """The bytes a key is hashed as: bytes as they are, str as UTF-8, int as 8 little-endian bytes."""
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode("utf-8")
    if isinstance(key, int):
        return _int_bits(key).to_bytes(8, "little")
    if isinstance(key, (bytearray, memoryview)):
        return bytes(key)
    raise TypeError(f"ring keys are bytes, str or int, not {type(key).__name__}")


def _int_bits(key: int) -> int:
    if not _INT_MIN <= key <= _MASK:
        raise OverflowError("integer keys must fit in 64 bits (-2**63 <= key < 2**64)")
    return key & _MASK


# --- validation, shared by both implementations ---------------------------------------------------

def _check_options(algorithm: str, points_per_weight: int, table_size: int, seed: int) -> None:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown ring algorithm {algorithm!r}: expected 'ketama' or 'maglev'")
    if not isinstance(points_per_weight, int) or not 1 <= points_per_weight <= MAX_POINTS:
        raise ValueError(f"points_per_weight must be an integer from 1 to {MAX_POINTS}")
    if not isinstance(table_size, int) or not 1 <= table_size <= MAX_TABLE_SIZE:
        raise ValueError(f"table_size must be an integer from 1 to {MAX_TABLE_SIZE} (65537 by default; "
                         f"use at least 100 times the total weight), got {table_size!r}")
    if not isinstance(seed, int) or not 0 <= seed <= _MASK:
        raise ValueError("seed must be an integer from 0 to 2**64 - 1")


def _check_weight(name: object, weight: object) -> None:
    if not isinstance(name, str):
        raise TypeError(f"server names are str, not {type(name).__name__}")
    if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= MAX_WEIGHT:
        raise ValueError(f"the weight of {name!r} must be an integer from 0 to {MAX_WEIGHT}, got {weight!r}")


def _check_points(weights: Mapping[str, int], algorithm: str, points_per_weight: int) -> None:
    if algorithm == "ketama" and sum(weights.values()) * points_per_weight > MAX_POINTS:
        raise ValueError(f"a ketama ring is limited to {MAX_POINTS} points: lower the weights or "
                         "points_per_weight")


def _check_factor(factor: object) -> None:
    if not isinstance(factor, int) or not 100 <= factor < (1 << 32):
        raise ValueError(f"the balance factor is a percentage of at least 100, got {factor!r}")


def _load_list(names: tuple[str, ...], loads: Mapping[str, int]) -> list[int]:
    values = [loads.get(name, 0) for name in names]
    for name, value in zip(names, values):
        if not isinstance(value, int) or not 0 <= value < (1 << 32):
            raise ValueError(f"the load of {name!r} must be an integer from 0 to 2**32 - 1, got {value!r}")
    return values


def table_head(names: Iterable[str], weights: Iterable[int], algorithm: str) -> bytes:
    """The first part of a ring's digested bytes (``ring.table_bytes``): each server in name order
    (its UTF-8 name, a NUL, its weight as le32), then the algorithm's name."""
    parts = [name.encode("utf-8") + b"\0" + struct.pack("<I", weight) for name, weight in zip(names, weights)]
    parts.append(algorithm.encode("ascii"))
    return b"".join(parts)
