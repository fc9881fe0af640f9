"""Stick tables (HAProxy's ``stick_table.c``), sans-IO: keys, their stored data, expiry and the size limit.

A ``StickTable`` is one ``stick-table`` line at run time: entries keyed by an address, an integer, a
string or bytes (``type ip|ipv6|integer|string|binary``), each holding the data types the line stores
(``store gpc0,conn_rate(10s)...``, ``DATA_TYPES``) and, for persistence, the server it sticks to.  Time
comes from an injected clock (seconds), so that expiry and rates are tested on a fake one.

As in HAProxy:

- An entry expires ``expire`` after it was last touched (created, matched, stored, tracked, released
  by the last connection tracking it), unless a connection still tracks it (``use`` > 0).  Without
  ``expire`` it never does.
- When the table is full, a new key first evicts the least recently touched entries no connection
  tracks (HAProxy trashes ``size / 256 + 1`` at once); with ``nopurge`` a full table refuses new keys.
- Rates are HAProxy's sliding-window ``freq_ctr`` over the period written (``rate.FreqCounter``), read
  as integers; counters are unsigned and wrap as HAProxy's 32-bit ones (64-bit for byte counts).

What uses a table is elsewhere: ``persistence`` (``stick on|match|store-request``), ``tracking``
(``track-sc*``, the ``sc_*``/``src_*`` fetches) and the runtime API (``show|clear|set table``, whose
line format, ``dump``, is here).  This module opens no socket and reads no file.

A table storing no more than the connection counters (``PUMP_DATA``) of ip or ipv6 keys, and used by
no persistence rule, may live in the compiled pump instead (``pump_can_keep``; the pump's
``stick_table``), where lanes track clients in it without Python: ``PumpStickTable`` is that table
as everybody else sees it, the same surface over the pump's entries (``_pump.SourceCounters``).
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Optional, Union

from .c_integers import signed
from .config import model
from .rate import FreqCounter

__all__ = ["ARRAYS", "DATA_TYPES", "KEY_TYPES", "PUMP_DATA", "DataType", "Entry", "PumpStickTable",
           "StickTable", "StickTableError", "check_stores", "element", "parse_store", "pump_can_keep",
           "tables_for"]

Key = Union[int, str, bytes]


class StickTableError(ValueError):
    """A table, a key or a data type that cannot be used; the message is HAProxy's where it has one."""


@dataclass(frozen=True)
class DataType:
    """One type of data an entry may store (HAProxy's ``stktable_data_types``)."""

    name: str
    kind: str  # "sint" (server_id), "uint" (32-bit counter), "ull" (64-bit counter), "rate", "name"
    layer7: bool = False  # counts HTTP requests: stays 0 at layer 4


# In HAProxy's order (``enum STKTABLE_DT``), which is the order ``show table`` writes them in.
DATA_TYPES: dict[str, DataType] = {t.name: t for t in (
    DataType("server_id", "sint"),
    DataType("gpt0", "uint"),
    DataType("gpc0", "uint"),
    DataType("gpc0_rate", "rate"),
    DataType("conn_cnt", "uint"),
    DataType("conn_rate", "rate"),
    DataType("conn_cur", "uint"),
    DataType("sess_cnt", "uint"),
    DataType("sess_rate", "rate"),
    DataType("http_req_cnt", "uint", layer7=True),
    DataType("http_req_rate", "rate", layer7=True),
    DataType("http_err_cnt", "uint", layer7=True),
    DataType("http_err_rate", "rate", layer7=True),
    DataType("bytes_in_cnt", "ull"),
    DataType("bytes_in_rate", "rate"),
    DataType("bytes_out_cnt", "ull"),
    DataType("bytes_out_rate", "rate"),
    DataType("gpc1", "uint"),
    DataType("gpc1_rate", "rate"),
    DataType("server_key", "name"),
    DataType("http_fail_cnt", "uint", layer7=True),
    DataType("http_fail_rate", "rate", layer7=True),
)}
_ORDER = {name: index for index, name in enumerate(DATA_TYPES)}
_WRAP = {"uint": 1 << 32, "ull": 1 << 64}

# HAProxy 2.6's arrays (``store gpt(2),gpc(3),gpc_rate(2,10s)``), after the others in its order: their
# elements are columns named as show table writes them (gpt0, gpc1, gpc1_rate...), and stand for the
# legacy types of the same names (gpt0, gpc0, gpc1 and their rates), which a table cannot also store.
ARRAYS = {"gpt": "uint", "gpc": "uint", "gpc_rate": "rate"}
_LEGACY = {"gpt": ("gpt0",), "gpc": ("gpc0", "gpc1"), "gpc_rate": ("gpc0_rate", "gpc1_rate")}
_CONFLICT = {"gpt": "gpt0", "gpc": "gpc[0/1]", "gpc_rate": "gpc[0/1]_rate"}
MAX_ARRAY = 100


def element(array: str, index: int) -> str:
    """The column of one element of an array: ``gpc``, 2 -> ``gpc2``; ``gpc_rate``, 2 -> ``gpc2_rate``."""
    return f"gpc{index}_rate" if array == "gpc_rate" else f"{array}{index}"


def _columns_of(store: model.StickStore) -> list[tuple[str, str, int]]:
    """A stored type's columns: (name, kind, order)."""
    if store.count is None:
        return [(store.name, DATA_TYPES[store.name].kind, _ORDER[store.name])]
    kind = ARRAYS[store.name]
    base = len(DATA_TYPES) + list(ARRAYS).index(store.name) * MAX_ARRAY
    return [(element(store.name, i), kind, base + i) for i in range(store.count)]


def check_stores(stores: list[model.StickStore]) -> None:
    """HAProxy's rule: an array excludes the legacy types it stands for."""
    names = {store.name for store in stores}
    for array, legacy in _LEGACY.items():
        if array in names and names & set(legacy):
            legacy_name = _CONFLICT[array]
            raise StickTableError(f"simultaneous usage of '{array}' and '{legacy_name}' in a same table is "
                                  f"not permitted as '{array}' overrides '{legacy_name}'.")

KEY_TYPES = ("ip", "ipv6", "integer", "string", "binary")
DEFAULT_KEY_LENGTH = 32  # of ``string`` and ``binary`` keys without ``len``


def parse_store(text: str, parse_time: Callable[[str], float]) -> list[model.StickStore]:
    """The data types of one ``store`` argument (``conn_cur,conn_rate(10s)``), with their periods."""
    stores = []
    for item in _split_store(text):
        match = re.fullmatch(r"([a-z0-9_]+)(?:\((.*)\))?", item)
        name = match[1] if match else item
        if name in ARRAYS:
            stores.append(_array_store(name, match[2] if match else None, parse_time))
            continue
        data_type = DATA_TYPES.get(name)
        if data_type is None:
            raise StickTableError(f"unknown store option '{name}'.")
        period = None
        if data_type.kind == "rate":
            if not match or match[2] is None:
                raise StickTableError(f"missing argument to store option '{name}'.")
            period = _period(name, match[2], parse_time)
        elif match and match[2] is not None:
            raise StickTableError(f"unexpected argument to store option '{name}'.")
        stores.append(model.StickStore(name, period))
    return stores


def _array_store(name: str, arguments: Optional[str], parse_time: Callable[[str], float]) -> model.StickStore:
    """``gpc(<nb>)``, ``gpt(<nb>)``, ``gpc_rate(<nb>,<period>)``."""
    words = arguments.split(",") if arguments is not None else []
    if not words or (name == "gpc_rate" and len(words) < 2):
        raise StickTableError(f"missing argument to store option '{name}'.")
    if len(words) > (2 if name == "gpc_rate" else 1):
        raise StickTableError(f"unexpected argument to store option '{name}'.")
    count = int(words[0]) if words[0].strip().isdigit() else 0
    if not 1 <= count <= MAX_ARRAY:
        raise StickTableError(f"array size is out of allowed range (1-{MAX_ARRAY}) for store option "
                              f"'{name}'.")
    period = _period(name, words[1], parse_time) if name == "gpc_rate" else None
    return model.StickStore(name, period, count)


def _period(name: str, text: str, parse_time: Callable[[str], float]) -> float:
    """A rate's period, which must be a positive time."""
    try:
        period = parse_time(text)
    except ValueError:
        period = 0.0
    if period <= 0:
        raise StickTableError(f"error when processing store option '{name}'.")
    return period


def _split_store(text: str) -> list[str]:
    """``a,b(1s),c``: commas outside parentheses separate the types."""
    items, depth, current = [], 0, ""
    for char in text:
        if char == "," and depth == 0:
            items.append(current)
            current = ""
            continue
        depth += char == "("
        depth -= char == ")"
        current += char
    items.append(current)
    return [item for item in items if item]


class Entry:
    """One key of a table and what it stores (read and change it through its table)."""

    __slots__ = ("key", "values", "expire", "use")

    def __init__(self, key: Key, values: list[Any]) -> None:
        self.key = key
        self.values = values  # by the table's column, ints or FreqCounters; the server name a str
        self.expire = 0.0  # when it expires, on the table's clock (0: never)
        self.use = 0  # connections tracking it now: it does not expire nor get evicted meanwhile


class StickTable:
    """One stick table while it runs."""

    def __init__(self, spec: model.StickTable, *, clock: Callable[[], float] = time.monotonic,
                 sticks: bool = False) -> None:
        self.spec = spec
        self.name = spec.name
        self.type = spec.type
        self.size = spec.size
        self.expire = spec.expire
        self.nopurge = spec.nopurge
        self.clock = clock
        self.key_length = spec.length or DEFAULT_KEY_LENGTH
        stores = list(spec.store)
        if sticks:  # persistence rules use the table: it stores the server, as HAProxy makes it
            stores += [model.StickStore(name) for name in ("server_id", "server_key")
                       if name not in {store.name for store in stores}]
        found: dict[str, tuple[str, int, Optional[float]]] = {}
        for store in stores:
            for name, kind, order in _columns_of(store):
                found[name] = (kind, order, store.period)
        self.arrays = {store.name for store in stores if store.count is not None}
        self.columns = sorted(found, key=lambda name: found[name][1])
        self.column = {name: index for index, name in enumerate(self.columns)}
        self.kinds = [found[name][0] for name in self.columns]
        self.periods = [found[name][2] or 1.0 for name in self.columns]
        self._rate_columns = [i for i, kind in enumerate(self.kinds) if kind == "rate"]
        self._entries: OrderedDict[Key, Entry] = OrderedDict()  # least recently touched first

    # --- the table ---------------------------------------------------------------------------------

    @property
    def used(self) -> int:
        self._purge_expired()
        return len(self._entries)

    @property
    def available(self) -> int:
        return self.size - self.used

    def stores(self, name: str) -> bool:
        return name in self.column

    def stores_legacy(self, name: str) -> bool:
        """Whether the table stores the type itself, not an array element of that name (what the
        runtime API may write and filter on)."""
        return name in self.column and not any(name in legacy for array, legacy in _LEGACY.items()
                                               if array in self.arrays)

    def stores_element(self, array: str, index: int) -> bool:
        """Whether the table stores that element of that array (``gpc``, ``gpc_rate``, ``gpt``)."""
        return array in self.arrays and element(array, index) in self.column

    def __iter__(self) -> Iterator[Entry]:
        """The entries in key order, as ``show table`` lists them."""
        self._purge_expired()
        return iter(sorted(self._entries.values(), key=lambda entry: entry.key))

    # --- keys ------------------------------------------------------------------------------------

    def key_of(self, value: Any, sample_type: str) -> Optional[Key]:
        """The key a sample's value gives in this table (HAProxy's casts to the table's type), or None
        when it has none (an IPv6 address in an ``ip`` table, a string that is no number...)."""
        if value is None:
            return None
        kind = self.type
        if sample_type == "ip":
            address = _address(value)
            if address is None:
                return None
            if kind in ("ip", "integer"):
                v4 = _ipv4(address)
                return int(v4) if v4 is not None else None
            if kind == "ipv6":
                return int(_ipv6(address))
            if kind == "string":
                return self._string(str(value))
            return self._binary(address.packed)
        if sample_type in ("int", "bool"):
            number = int(value)
            if kind == "ip":
                return number & 0xFFFFFFFF
            if kind == "ipv6":
                return None
            if kind == "integer":
                return number & 0xFFFFFFFF
            if kind == "string":
                return self._string(str(number))
            return self._binary((number & (1 << 64) - 1).to_bytes(8, "big"))
        text = str(value)
        if kind == "string":
            return self._string(text)
        if kind == "binary":
            return self._binary(text.encode("utf-8", "surrogateescape"))
        if kind == "integer":
            match = re.match(r"\s*[-+]?[0-9]+", text)
            return signed(match[0].strip()) & 0xFFFFFFFF if match else None
        return self.parse_key(text, strict=False)

    def parse_key(self, text: str, *, strict: bool = True) -> Optional[Key]:
        """A key as the runtime API writes it (``key 10.0.0.1``); None when it is not one.  Binary
        keys cannot be written there (HAProxy refuses them too: ``strict`` raises)."""
        kind = self.type
        if kind in ("ip", "ipv6"):
            address = _address(text)
            if address is None or (kind == "ip" and address.version != 4) or (
                    kind == "ipv6" and address.version != 6):
                return None
            return int(address)
        if kind == "integer":
            if not re.fullmatch(r"[-+]?[0-9]+", text):
                return None
            return signed(text) & 0xFFFFFFFF
        if kind == "string":
            return self._string(text)
        if strict:
            raise StickTableError("Inserting keys into tables of type other than ip, ipv6, string and "
                                  "integer is not supported")
        return None

    def key_text(self, key: Key) -> str:
        """A key as ``show table`` writes it."""
        if self.type == "ip":
            return str(ipaddress.IPv4Address(key))
        if self.type == "ipv6":
            return str(ipaddress.IPv6Address(key))
        if isinstance(key, bytes):
            return key.hex().upper()
        return str(key)

    def _string(self, text: str) -> str:
        return text[:self.key_length]

    def _binary(self, data: bytes) -> bytes:
        return data[:self.key_length].ljust(self.key_length, b"\0")

    # --- entries ---------------------------------------------------------------------------------

    def lookup(self, key: Key) -> Optional[Entry]:
        """The key's entry, or None (expired entries are gone first)."""
        self._purge_expired()
        return self._entries.get(key)

    def get(self, key: Key) -> Optional[Entry]:
        """The key's entry, created when absent (HAProxy's ``stktable_get_entry``); None when the
        table is full and may not evict (``nopurge``, or every entry in use)."""
        entry = self.lookup(key)
        if entry is None and self._make_room():
            entry = self._insert(key)
        return entry

    def store(self, key: Key) -> Optional[Entry]:
        """The entry a ``stick store`` writes to: room is made *before* the key is looked up, as
        HAProxy allocates the new entry first (``stksess_new``), so that a full ``nopurge`` table
        refuses to store even a key it holds, and a full purging one evicts its oldest entry, maybe
        that very key, to write it anew.  None when refused."""
        self._purge_expired()
        if not self._make_room():
            return None
        return self._entries.get(key) or self._insert(key)

    def remove(self, key: Key) -> bool:
        """Forget the key unless a connection tracks it (``clear table``); whether it went."""
        entry = self.lookup(key)
        if entry is None or entry.use:
            return False
        del self._entries[key]
        return True

    def touch(self, entry: Entry) -> None:
        """The entry was used: its expiry starts again, and it is the last one to evict."""
        if self.expire:
            entry.expire = self.clock() + self.expire
        if entry.key in self._entries:
            self._entries.move_to_end(entry.key)

    def hold(self, entry: Entry) -> None:
        """A connection tracks the entry from now on."""
        entry.use += 1

    def release(self, entry: Entry) -> None:
        """A connection that tracked the entry ended (HAProxy touches it then)."""
        entry.use = max(entry.use - 1, 0)
        self.touch(entry)

    def track(self, key: Key) -> Optional[Entry]:
        """``track-sc<n>``: the key's entry (created if need be) counts one more connection in
        conn_cur, conn_cnt and conn_rate and is held by it; None when the table refused the key."""
        entry = self.get(key)
        if entry is None:  # the table is full and may not evict
            return None
        self.hold(entry)
        for name in ("conn_cur", "conn_cnt", "conn_rate"):
            self.add(entry, name)
        self.touch(entry)
        return entry

    def untrack(self, entry: Entry) -> None:
        """The connection that tracked the entry ended: one less in conn_cur, and released."""
        current = self.read(entry, "conn_cur")
        if current:
            self.set(entry, "conn_cur", current - 1)
        self.release(entry)

    def _insert(self, key: Key) -> Entry:
        rates = self._rate_columns
        values: list[Any] = [FreqCounter() if i in rates else 0 for i in range(len(self.columns))]
        if "server_key" in self.column:
            values[self.column["server_key"]] = ""
        entry = Entry(key, values)
        self._entries[key] = entry
        self.touch(entry)
        return entry

    def _make_room(self) -> bool:
        if len(self._entries) < self.size:
            return True
        if self.nopurge:
            return False
        batch = (self.size >> 8) + 1
        for key in [k for k, entry in self._entries.items() if not entry.use][:batch]:
            del self._entries[key]
        return len(self._entries) < self.size

    def _purge_expired(self) -> None:
        if not self.expire or not self._entries:
            return
        now = self.clock()
        entries = self._entries
        for _ in range(len(entries)):
            entry = next(iter(entries.values()))
            if entry.expire > now:
                return
            if entry.use:  # tracked: it expires once released and not touched again
                entries.move_to_end(entry.key)
            else:
                del entries[entry.key]

    # --- data ------------------------------------------------------------------------------------

    def read(self, entry: Entry, name: str) -> Any:
        """The value of a stored data type (rates as HAProxy reads them: whole events per period);
        None when the table does not store it."""
        index = self.column.get(name)
        if index is None:
            return None
        value = entry.values[index]
        if isinstance(value, FreqCounter):
            return int(value.rate(self.clock(), self.periods[index]))
        return value

    def add(self, entry: Entry, name: str, count: int = 1) -> None:
        """Count ``count`` events in a counter or a rate (nothing if the table does not store it)."""
        index = self.column.get(name)
        if index is None:
            return
        value = entry.values[index]
        if isinstance(value, FreqCounter):
            value.add(self.clock(), count, self.periods[index])
        else:
            entry.values[index] = (value + count) % _WRAP[self.kinds[index]]

    def set(self, entry: Entry, name: str, value: Any) -> None:
        """Write a value (``set table``, ``sc-set-gpt0``, the server a persistence rule stores)."""
        index = self.column.get(name)
        if index is None:
            return
        kind = self.kinds[index]
        current = entry.values[index]
        if isinstance(current, FreqCounter):
            current.set(self.clock(), int(value) % (1 << 32))
        elif kind in _WRAP:
            entry.values[index] = int(value) % _WRAP[kind]
        elif kind == "sint":
            entry.values[index] = (int(value) + (1 << 31)) % (1 << 32) - (1 << 31)
        else:
            entry.values[index] = value

    # --- the runtime API's line -------------------------------------------------------------------

    def header(self) -> str:
        """``show table``'s line about the table itself."""
        return f"# table: {self.name}, type: {self.type}, size:{self.size}, used:{self.used}"

    def dump(self, entry: Entry) -> str:
        """``show table <t>``'s line of one entry: where it is (HAProxy prints the address of its
        struct; fastproxy the object's id), its key, use, expiry in ms, then each stored type."""
        now = self.clock()
        exp = max(round((entry.expire - now) * 1000), 0) if self.expire else 0
        words = [f"0x{id(entry):x}: key={self.key_text(entry.key)} use={entry.use} exp={exp}"]
        for index, name in enumerate(self.columns):
            value = self.read(entry, name)
            if self.kinds[index] == "rate":
                words.append(f"{name}({int(self.periods[index] * 1000)})={value}")
            else:
                words.append(f"{name}={value}")
        return " ".join(words)


PUMP_DATA = ("conn_cur", "conn_cnt", "conn_rate")  # what a table the pump keeps may store, in its order


def pump_can_keep(table: StickTable) -> bool:
    """Whether the compiled pump can keep ``table`` (and lanes track clients in it): ip or ipv6 keys,
    no data but the connection counters, no server stored by persistence rules."""
    return table.type in ("ip", "ipv6") and table.size > 0 and set(table.columns) <= set(PUMP_DATA)


class PumpStickTable(StickTable):
    """A stick table whose entries the compiled pump keeps (``Pump.stick_table`` makes it), so that
    its lanes track clients in it at accept while the Python path, the runtime API and the exporter
    read and change the very same entries through this surface.  ``Entry`` objects it gives are
    snapshots naming a key: every read and change goes to the pump's entry of that key, under its
    lock.  ``counters`` is the pump's ``SourceCounters``; ``counters_class`` builds it."""

    def __init__(self, spec: model.StickTable, counters_class: Callable[..., Any], *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(spec, clock=clock)
        assert pump_can_keep(self), "a table the pump cannot keep"
        period = self.periods[self.column["conn_rate"]] if "conn_rate" in self.column else 1.0
        self.counters = counters_class(self.size, round((self.expire or 0) * 1000), round(period * 1000),
                                       self.nopurge, self.type == "ipv6", self.columns)

    def _raw(self, key: Key) -> bytes:
        address = key if self.type == "ipv6" else (0xFFFF << 32) | int(key)
        return int(address).to_bytes(16, "big")

    def _key(self, raw: bytes) -> int:
        value = int.from_bytes(raw, "big")
        return value if self.type == "ipv6" else value & 0xFFFFFFFF

    def _entry(self, key: Key, found: Optional[tuple]) -> Optional[Entry]:
        if found is None:
            return None
        entry = Entry(key, list(found[:3]))
        entry.use = found[3]
        entry.expire = self.clock() + found[4] / 1000 if self.expire else 0.0
        return entry

    @property
    def used(self) -> int:
        return int(self.counters.used)

    def __iter__(self) -> Iterator[Entry]:
        entries = [self._entry(self._key(raw), found) for raw, found in self.counters.entries()]
        return iter(sorted((entry for entry in entries if entry is not None), key=lambda entry: entry.key))

    def lookup(self, key: Key) -> Optional[Entry]:
        return self._entry(key, self.counters.lookup(self._raw(key)))

    def get(self, key: Key) -> Optional[Entry]:
        return self._entry(key, self.counters.lookup(self._raw(key), True))

    def store(self, key: Key) -> Optional[Entry]:
        raise StickTableError("a table the pump keeps stores no server")

    def remove(self, key: Key) -> bool:
        return bool(self.counters.change(self._raw(key), "remove"))

    def touch(self, entry: Entry) -> None:
        self.counters.change(self._raw(entry.key), "touch")

    def hold(self, entry: Entry) -> None:
        self.counters.change(self._raw(entry.key), "hold")

    def release(self, entry: Entry) -> None:
        self.counters.change(self._raw(entry.key), "release")

    def track(self, key: Key) -> Optional[Entry]:
        if not self.counters.track(self._raw(key)):
            return None
        return self.lookup(key)

    def untrack(self, entry: Entry) -> None:
        self.counters.untrack(self._raw(entry.key))

    def read(self, entry: Entry, name: str) -> Any:
        if name not in self.column:
            return None
        found = self.counters.lookup(self._raw(entry.key))
        return found[PUMP_DATA.index(name)] if found is not None else 0

    def add(self, entry: Entry, name: str, count: int = 1) -> None:
        if name in self.column:
            self.counters.change(self._raw(entry.key), "add", PUMP_DATA.index(name), count)

    def set(self, entry: Entry, name: str, value: Any) -> None:
        if name in self.column:
            self.counters.change(self._raw(entry.key), "set", PUMP_DATA.index(name), int(value) % (1 << 32))


def _address(value: Any) -> Optional[Union[ipaddress.IPv4Address, ipaddress.IPv6Address]]:
    try:
        return ipaddress.ip_address(str(value).split("%", 1)[0])
    except ValueError:
        return None


def _ipv4(address: Union[ipaddress.IPv4Address, ipaddress.IPv6Address]) -> Optional[ipaddress.IPv4Address]:
    if isinstance(address, ipaddress.IPv4Address):
        return address
    return address.ipv4_mapped


def _ipv6(address: Union[ipaddress.IPv4Address, ipaddress.IPv6Address]) -> ipaddress.IPv6Address:
    if isinstance(address, ipaddress.IPv6Address):
        return address
    return ipaddress.IPv6Address(f"::ffff:{address}")


def tables_for(config: model.Config, clock: Callable[[], float] = time.monotonic) -> dict[str, StickTable]:
    """The tables of a configuration, by name; those persistence rules use store the server too."""
    sticking = {rule.table or backend.name for backend in config.backends.values()
                for rule in backend.stick_rules}
    return {name: StickTable(spec, clock=clock, sticks=name in sticking)
            for name, spec in config.stick_tables.items()}
