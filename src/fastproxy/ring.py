"""Consistent hashing: a weighted ring of named servers that maps keys to servers the same way everywhere.

``HashRing(weights, algorithm="ketama" | "maglev", points_per_weight=160, table_size=65537, seed=0)``
maps ``bytes``, ``str`` and ``int`` keys to server names.  It is usable on its own, without a proxy;
the balancer (``fastproxy.balance``) builds on it for ``hash-type consistent`` and ``hash-type maglev``.

Every instance, in any process on any machine, builds the same table from the same weights, table
size and seed: keys and server positions are hashed with XXH64 (implemented here from its published
specification, never Python's ``hash()``), and server positions derive only from the server's name
and the seed, in name order.  The two algorithms:

- ``ketama``: each server has ``points_per_weight * weight`` points on a 64-bit circle
  (point ``j`` of server ``name`` sits at ``XXH64(le64(j), seed=XXH64(name, seed))``); a key goes to
  the first point at or after its hash.  Removing a server moves exactly that server's keys, adding
  one moves keys only to it, and changing a weight adds or removes that server's last points only.
- ``maglev`` (Maglev, Eisenbud et al., NSDI 2016; weighted as Envoy does): a lookup table of
  ``table_size`` entries filled from per-server preference walks (see ``_fill_maglev``), a key going
  to entry ``((hash >> 32) * table_size) >> 32``.  One memory access per lookup and near-perfect
  balance: each server within an entry per unit of weight of its share (so within 1 % of it with
  100 entries per unit of total weight).  A change moves a little more than the changed server's
  share of keys (at most 1.7 times it with equal weights in our tests, up to ~2.6 times for a light
  server among heavier ones).  A fastproxy extension to HAProxy (``hash-type maglev``).

Bounded loads (HAProxy's ``hash-balance-factor``, Mirrokni et al.): ``lookup_bounded(key, loads,
factor)`` walks on from the key's server to the first one whose load is under its weighted share of
``factor`` percent of the in-flight total.

Tables are immutable snapshots: ``add`` and ``remove`` build a new one (the compiled build releases
the GIL) and swap it in with one assignment, so lookups never see a half-built table.

``HashRing`` is the compiled ring of ``_ring.pyx`` (``CHashRing``) when it can be imported and
extensions are not disabled (``FASTPROXY_NO_EXTENSIONS=1``); ``PyHashRing`` is its pure-Python twin,
the reference the compiled one is tested against.
"""

from __future__ import annotations

import bisect
import struct
import threading
from collections.abc import Iterable, Iterator, Mapping

from ._impl import load_extension
from ._ring_common import (  # noqa: F401  (re-exported: the ring's public names)
    ALGORITHMS, MAX_POINTS, MAX_TABLE_SIZE, MAX_WEIGHT, EmptyRingError, Key, _check_factor, _check_options,
    _check_points, _check_weight, _empty, _int_bits, _key_bytes, _load_list, table_head,
)

__all__ = [
    "COMPILED", "CHashRing", "EmptyRingError", "HashRing", "PyHashRing",
    "bounded_eligible", "py_xxh64", "table_bytes", "xxh64",
]




# --- XXH64, from the specification (https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md) ---

_MASK = (1 << 64) - 1
_P1 = 0x9E3779B185EBCA87
_P2 = 0xC2B2AE3D27D4EB4F
_P3 = 0x165667B19E3779F9
_P4 = 0x85EBCA77C2B2AE63
_P5 = 0x27D4EB2F165667C5


def _round(acc: int, lane: int) -> int:
    acc = (acc + lane * _P2) & _MASK
    acc = ((acc << 31) | (acc >> 33)) & _MASK
    return (acc * _P1) & _MASK


def _merge(acc: int, value: int) -> int:
    acc ^= _round(0, value)
    return (acc * _P1 + _P4) & _MASK


def _rotl(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (64 - bits))) & _MASK


def _avalanche(h: int) -> int:
    h ^= h >> 33
    h = (h * _P2) & _MASK
    h ^= h >> 29
    h = (h * _P3) & _MASK
    return h ^ (h >> 32)


def py_xxh64(data: bytes, seed: int = 0) -> int:
    """XXH64 of ``data`` with ``seed`` (0 <= seed < 2**64), in pure Python."""
    seed &= _MASK
    length = len(data)
    offset = 0
    if length >= 32:
        stripes = length // 32
        lanes = struct.unpack_from(f"<{stripes * 4}Q", data)
        v1, v2, v3, v4 = (seed + _P1 + _P2) & _MASK, (seed + _P2) & _MASK, seed, (seed - _P1) & _MASK
        for i in range(0, stripes * 4, 4):
            v1 = _round(v1, lanes[i])
            v2 = _round(v2, lanes[i + 1])
            v3 = _round(v3, lanes[i + 2])
            v4 = _round(v4, lanes[i + 3])
        h = (_rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)) & _MASK
        for v in (v1, v2, v3, v4):
            h = _merge(h, v)
        offset = stripes * 32
    else:
        h = (seed + _P5) & _MASK
    h = (h + length) & _MASK
    while offset + 8 <= length:
        h ^= _round(0, int.from_bytes(data[offset:offset + 8], "little"))
        h = (_rotl(h, 27) * _P1 + _P4) & _MASK
        offset += 8
    if offset + 4 <= length:
        h ^= (int.from_bytes(data[offset:offset + 4], "little") * _P1) & _MASK
        h = (_rotl(h, 23) * _P2 + _P3) & _MASK
        offset += 4
    while offset < length:
        h ^= (data[offset] * _P5) & _MASK
        h = (_rotl(h, 11) * _P1) & _MASK
        offset += 1
    return _avalanche(h)


def _xxh64_u64(value: int, seed: int) -> int:
    """XXH64 of the 8 little-endian bytes of ``value``: ``py_xxh64(value.to_bytes(8, "little"), seed)``."""
    h = (seed + _P5 + 8) & _MASK
    h ^= _round(0, value)
    return _avalanche((_rotl(h, 27) * _P1 + _P4) & _MASK)


def _key_hash(key: Key, seed: int) -> int:
    if isinstance(key, int):
        return _xxh64_u64(_int_bits(key), seed)
    return py_xxh64(_key_bytes(key), seed)


# --- validation, shared by both implementations ---------------------------------------------------

def bounded_eligible(load: int, weight: int, cumulative: int, total_weight: int, in_flight: int,
                     factor: int) -> bool:
    """HAProxy's chash_server_is_eligible(): is ``load`` under this server's share of the slots?

    The slots are ``(in_flight + 1) * factor / 100`` rounded up, shared in proportion to the weights
    (whole slots per unit of weight, the remainder spread by cumulative weight), never 0.
    """
    slots_total = ((in_flight + 1) * factor + 99) // 100
    per_weight, remainder = divmod(slots_total, total_weight)
    slots = (weight * per_weight + ((cumulative + weight) * remainder) // total_weight
             - (cumulative * remainder) // total_weight)
    return load < (slots or 1)


# --- the pure-Python twin -------------------------------------------------------------------------

class PyTable:
    """One immutable snapshot of a ring: servers in name order and the points or entries mapping to them."""

    __slots__ = (
        "algorithm",
        "cumulative",
        "entries",
        "names",
        "owners",
        "positions",
        "seed",
        "size",
        "total_weight",
        "weights",
    )

    def __init__(self, names: tuple[str, ...], weights: list[int], algorithm: str, seed: int) -> None:
        self.names = names
        self.algorithm = algorithm
        self.seed = seed
        self.weights = weights
        self.cumulative: list[int] = []
        total = 0
        for weight in weights:
            self.cumulative.append(total)
            total += weight
        self.total_weight = total
        self.positions: list[int] = []  # ketama: sorted points ...
        self.owners: list[int] = []  # ... and whose each one is
        self.entries: list[int] = []  # maglev: the lookup table
        self.size = 0

    def start(self, h: int) -> int:
        """Where the walk for hash ``h`` starts (a point or entry index), or -1 on an empty table."""
        if self.algorithm == "ketama":
            if not self.positions:
                return -1
            i = bisect.bisect_left(self.positions, h)
            return 0 if i == len(self.positions) else i
        if not self.entries:
            return -1
        return ((h >> 32) * self.size) >> 32

    def length(self) -> int:
        return len(self.positions) if self.algorithm == "ketama" else len(self.entries)

    def server_at(self, position: int) -> int:
        return self.owners[position] if self.algorithm == "ketama" else self.entries[position]

    def server_of(self, h: int) -> int:
        start = self.start(h)
        return -1 if start < 0 else self.server_at(start)

    def eligible(self, server: int, loads: list[int], in_flight: int, factor: int) -> bool:
        return bounded_eligible(loads[server], self.weights[server], self.cumulative[server],
                                 self.total_weight, in_flight, factor)

    def server_of_bounded(self, h: int, loads: list[int], in_flight: int, factor: int) -> int:
        start = self.start(h)
        if start < 0:
            return -1
        length = self.length()
        position = start
        for _ in range(length):
            server = self.server_at(position)
            if self.eligible(server, loads, in_flight, factor):
                return server
            position = position + 1 if position + 1 < length else 0
        # Maglev may leave a light server without an entry: give it its chance before giving up.
        for server, weight in enumerate(self.weights):
            if weight and self.eligible(server, loads, in_flight, factor):
                return server
        return self.server_at(start)

    def walk(self, h: int) -> Iterator[str]:
        start = self.start(h)
        if start < 0:
            return
        seen = [False] * len(self.names)
        remaining = sum(1 for weight in self.weights if weight)
        length = self.length()
        for k in range(length):
            position = start + k
            server = self.server_at(position if position < length else position - length)
            if not seen[server]:
                seen[server] = True
                yield self.names[server]
                remaining -= 1
                if not remaining:
                    return
        for server, weight in enumerate(self.weights):
            if weight and not seen[server]:
                yield self.names[server]

    def shares(self) -> dict[str, float]:
        owned = [0] * len(self.names)
        if self.algorithm == "ketama":
            previous = self.positions[-1] - (1 << 64) if self.positions else 0
            for position, owner in zip(self.positions, self.owners):
                owned[owner] += position - previous
                previous = position
            scale = float(1 << 64)
        else:
            for server in self.entries:
                owned[server] += 1
            scale = float(self.size)
        return {name: count / scale for name, count in zip(self.names, owned)}


def _fill_maglev(size: int, weights: list[int], offsets: list[int], skips: list[int]) -> list[int]:
    """Maglev's population.  Each server's preferences are a walk ``x += skip`` (mod 2**32, ``skip``
    odd so that the walk covers every value) from ``offset``, entry ``(x * size) >> 32``: the paper's
    ``offset + j * skip`` (mod a prime ``size``) lets two servers draw the same skip (about
    N**2 / 2 size of the time), and then walk in step and trade hundreds of entries on any change;
    skips drawn from 2**31 values do not collide in practice.
    Servers take turns as Envoy weights them: in round ``i`` a server takes its next preferred free
    entry if ``i * weight`` has reached its target, which then grows by the largest weight (from half
    of it, so that each server's count of turns is rounded, not truncated, to its share).
    A walk that passes ``size`` taken entries in a row takes the next free entry in table order,
    then and for the rest of the fill: a skip whose step is close to a fraction with a small
    denominator (a few in 10**5 draws) would otherwise circle over a few taken entries for up to
    2**32 steps."""
    empty = -1
    entries = [empty] * size
    live = [server for server, weight in enumerate(weights) if weight]
    if not live:
        return []
    largest = max(weights)
    cursor = {server: offsets[server] for server in live}
    probing = dict.fromkeys(live, False)
    target = dict.fromkeys(live, largest // 2)
    filled = 0
    iteration = 1
    while True:
        for server in live:
            if iteration * weights[server] < target[server]:
                continue
            target[server] += largest
            x, skip = cursor[server], skips[server]
            if not probing[server]:
                steps = 0
                while entries[(x * size) >> 32] != empty:
                    x = (x + skip) & 0xFFFFFFFF
                    steps += 1
                    if steps == size:
                        probing[server] = True
                        break
            if probing[server]:
                i = (x * size) >> 32
                while entries[i] != empty:
                    i = i + 1 if i + 1 < size else 0
                entries[i] = server
                cursor[server] = _entry_start((i + 1) % size, size)
            else:
                entries[(x * size) >> 32] = server
                cursor[server] = (x + skip) & 0xFFFFFFFF
            filled += 1
            if filled == size:
                return entries
        iteration += 1


def table_bytes(names: Iterable[str], weights: Iterable[int], algorithm: str, positions: Iterable[int],
                owners: Iterable[int], entries: Iterable[int]) -> bytes:
    """The canonical bytes a ring's digest is taken of, the same for both implementations:
    ``table_head`` (servers, weights, algorithm), then the table: ketama's points in order (position
    le64, server index le32), Maglev's entries (le32)."""
    head = table_head(names, weights, algorithm)
    if algorithm == "ketama":
        return head + b"".join(struct.pack("<QI", point, owner) for point, owner in zip(positions, owners))
    entries = list(entries)
    return head + struct.pack(f"<{len(entries)}I", *entries)


def _entry_start(entry: int, size: int) -> int:
    """The first walk position that lands on ``entry``: ceil(entry * 2**32 / size)."""
    return -(-(entry << 32) // size)


class PyHashRing:
    """A weighted consistent-hash ring of named servers (the pure-Python implementation).

    ``weights`` maps server names to integer weights (0 keeps a server in the ring without keys).
    See the module documentation for the algorithms and their guarantees.
    """

    def __init__(self, weights: Mapping[str, int], algorithm: str = "ketama", *,
                 points_per_weight: int = 160, table_size: int = 65537, seed: int = 0) -> None:
        _check_options(algorithm, points_per_weight, table_size, seed)
        self.algorithm = algorithm
        self.points_per_weight = points_per_weight
        self.table_size = table_size
        self.seed = seed
        self._lock = threading.Lock()
        self._points: dict[str, list[int]] = {}  # ketama points already computed, per server
        weights = dict(weights)
        for name, weight in weights.items():
            _check_weight(name, weight)
        _check_points(weights, algorithm, points_per_weight)
        self._weights = weights
        self.table = self._build(weights)

    # --- lookups ---

    def key_hash(self, key: Key) -> int:
        """The 64-bit hash a key is looked up by: XXH64 of its bytes with the ring's seed."""
        return _key_hash(key, self.seed)

    def lookup(self, key: Key) -> str:
        """The server for ``key``; EmptyRingError when no server has a positive weight."""
        table = self.table
        server = table.server_of(_key_hash(key, table.seed))
        if server < 0:
            raise _empty()
        return table.names[server]

    def lookup_hash(self, h: int) -> str:
        """The server for a precomputed 64-bit hash (as ``key_hash`` returns)."""
        if not isinstance(h, int):
            raise TypeError(f"a hash is an integer, not {type(h).__name__}")
        if not 0 <= h <= _MASK:
            raise OverflowError("hashes are integers from 0 to 2**64 - 1")
        server = self.table.server_of(h)
        if server < 0:
            raise _empty()
        return self.table.names[server]

    def lookup_many(self, keys: Iterable[Key]) -> list[str]:
        """The server of each key, in order (the compiled ring releases the GIL over the batch)."""
        table = self.table
        seed, names = table.seed, table.names
        result = []
        for key in keys:
            server = table.server_of(_key_hash(key, seed))
            if server < 0:
                raise _empty()
            result.append(names[server])
        return result

    def lookup_bounded(self, key: Key, loads: Mapping[str, int], factor: int = 125) -> str:
        """The server for ``key`` under bounded loads: the first one along the key's walk whose load
        (``loads[name]``, missing names count 0) is under its weighted share of ``factor`` percent of
        the in-flight total plus this one (HAProxy's ``hash-balance-factor``)."""
        _check_factor(factor)
        table = self.table
        values = _load_list(table.names, loads)
        server = table.server_of_bounded(_key_hash(key, table.seed), values, sum(values), factor)
        if server < 0:
            raise _empty()
        return table.names[server]

    def walk(self, key: Key) -> Iterator[str]:
        """Every server of positive weight once, in the order the ring offers them to ``key``: the
        key's server first, then those the key would move to as servers before them go away."""
        table = self.table
        if not table.total_weight:
            raise _empty()
        return table.walk(_key_hash(key, table.seed))

    def shares(self) -> dict[str, float]:
        """The fraction of the hash space each server owns (of the circle for ketama, of the table
        entries for maglev)."""
        return self.table.shares()

    def digest(self) -> int:
        """XXH64 of the table itself (see ``table_bytes``): equal on two rings exactly when they
        route every key alike, whatever the order their servers were added in."""
        return py_xxh64(table_bytes(self.table.names, self.table.weights, self.algorithm,
                                    self.table.positions, self.table.owners, self.table.entries))

    # --- membership ---

    @property
    def weights(self) -> dict[str, int]:
        return dict(self._weights)

    def add(self, name: str, weight: int = 1) -> None:
        """Add a server, or change its weight if it is already in the ring."""
        _check_weight(name, weight)
        with self._lock:
            weights = dict(self._weights)
            weights[name] = weight
            _check_points(weights, self.algorithm, self.points_per_weight)
            table = self._build(weights)
            self._weights, self.table = weights, table

    def remove(self, name: str) -> None:
        """Take a server out of the ring; KeyError if it is not in it."""
        with self._lock:
            weights = dict(self._weights)
            del weights[name]
            table = self._build(weights)
            self._weights, self.table = weights, table
            self._points.pop(name, None)

    def __len__(self) -> int:
        return len(self._weights)

    def __iter__(self) -> Iterator[str]:
        return iter(self.table.names)

    def __contains__(self, name: object) -> bool:
        return name in self._weights

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.algorithm} servers={len(self)} "
                f"weight={self.table.total_weight} seed={self.seed}>")

    # --- building ---

    def _build(self, weights: dict[str, int]) -> PyTable:
        names = tuple(sorted(weights))
        table = PyTable(names, [weights[name] for name in names], self.algorithm, self.seed)
        if self.algorithm == "ketama":
            self._build_ketama(table)
        else:
            self._build_maglev(table)
        return table

    def _server_points(self, name: str, count: int) -> list[int]:
        points = self._points.get(name)
        if points is None or len(points) < count:
            base = py_xxh64(name.encode("utf-8"), self.seed)
            points = [_xxh64_u64(j, base) for j in range(count)]
            self._points[name] = points
        return points[:count]

    def _build_ketama(self, table: PyTable) -> None:
        pairs: list[tuple[int, int]] = []
        for server, (name, weight) in enumerate(zip(table.names, table.weights)):
            points = self._server_points(name, weight * self.points_per_weight)
            pairs.extend((position, server) for position in points)
        pairs.sort()
        table.positions = [position for position, _ in pairs]
        table.owners = [server for _, server in pairs]

    def _build_maglev(self, table: PyTable) -> None:
        size = self.table_size
        offsets, skips = [], []
        for name in table.names:
            h1 = py_xxh64(name.encode("utf-8"), self.seed)
            h2 = py_xxh64(name.encode("utf-8"), h1)
            offsets.append(h1 & 0xFFFFFFFF)
            skips.append((h2 & 0xFFFFFFFF) | 1)
        table.size = size
        table.entries = _fill_maglev(size, table.weights, offsets, skips)


_compiled = load_extension("_ring")

COMPILED: bool = _compiled is not None
CHashRing: type | None = _compiled.HashRing if _compiled is not None else None
HashRing: type = CHashRing if CHashRing is not None else PyHashRing


def xxh64(data: bytes | str, seed: int = 0) -> int:
    """XXH64 of ``data`` (str as UTF-8) with ``seed``: the hash every ring lookup starts from."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if _compiled is not None:
        return _compiled.xxh64_digest(data, seed)
    return py_xxh64(data, seed)
