"""Stick counters of one connection (HAProxy's ``stkctr``): what ``track-sc<n>`` tracks, what the
``sc-inc-gpc*`` / ``sc-set-gpt0`` actions change, and the values the ``sc_*``, ``src_*`` and ``table_*``
fetches read.

A ``Tracker`` is made per connection of a frontend whose rules may look at stick tables; the router
runs the rules over it (``acl.Router``), ``samples`` reads fetch values through ``Tracker.fetch``, the
session releases it when the connection ends.  As in HAProxy, tracking an entry counts one more in its
``conn_cur``, ``conn_cnt`` and ``conn_rate`` at once, one more ``sess_cnt`` / ``sess_rate`` once the
connection and session rules accepted it (for entries tracked by those rules), its bytes when the
connection ends, and ``conn_cur`` goes down again then (rejected connections included).  Only the first
``track-sc<n>`` rule of each counter number that applies tracks.  Sans-IO: tables and their clock are
``sticktables``'.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from .samples import COUNTER_VALUES, MAX_TRACKED
from .sticktables import Entry, StickTable, element

__all__ = ["Tracker"]

SESSION_PHASES = ("connection", "session")


class Tracker:
    """The (up to three) stick counters a connection tracks."""

    __slots__ = ("tables", "own", "counters", "phases")

    def __init__(self, tables: Mapping[str, StickTable], own: Optional[str]) -> None:
        self.tables = tables
        self.own = own  # the table of the proxy whose rules run: the default of ``src_*`` and ``table_*``
        self.counters: list[Optional[tuple[StickTable, Entry]]] = [None] * MAX_TRACKED
        self.phases: list[str] = ["", "", ""]

    # --- actions -----------------------------------------------------------------------------------

    def track(self, number: int, table: StickTable, key: Any, phase: str) -> None:
        """``track-sc<number>``: the entry of ``key`` in ``table`` (created if needed) is counted."""
        if self.counters[number] is not None or key is None:
            return
        entry = table.track(key)
        if entry is None:  # the table is full and may not evict
            return
        self.counters[number] = (table, entry)
        self.phases[number] = phase

    def session_started(self) -> None:
        """The connection and session rules accepted the connection: a session for what they track."""
        for number, tracked in enumerate(self.counters):
            if tracked is not None and self.phases[number] in SESSION_PHASES:
                table, entry = tracked
                table.add(entry, "sess_cnt")
                table.add(entry, "sess_rate")

    def increment_gpc(self, number: int, which: int, array: bool = False) -> None:
        """``sc-inc-gpc0(<n>)`` / ``sc-inc-gpc1(<n>)`` (the legacy counter, or the array's element);
        ``sc-inc-gpc(<which>,<n>)`` with ``array``: only an array's element."""
        tracked = self.counters[number]
        if tracked is not None and (not array or tracked[0].stores_element("gpc", which)):
            _increment(*tracked, which)

    def set_gpt(self, number: int, which: int, value: int, array: bool = False) -> None:
        """``sc-set-gpt0(<n>) <value>`` (the legacy tag, or the array's first); ``sc-set-gpt(<which>,<n>)``
        with ``array``: only an array's element."""
        tracked = self.counters[number]
        if tracked is not None and (not array or tracked[0].stores_element("gpt", which)):
            tracked[0].set(tracked[1], f"gpt{which}", value)
            tracked[0].touch(tracked[1])

    def ended(self, bytes_in: int, bytes_out: int) -> None:
        """The connection's pair ended: count its bytes (from the client, to the client)."""
        for tracked in self.counters:
            if tracked is not None:
                table, entry = tracked
                for name, count in (("bytes_in_cnt", bytes_in), ("bytes_in_rate", bytes_in),
                                    ("bytes_out_cnt", bytes_out), ("bytes_out_rate", bytes_out)):
                    table.add(entry, name, count)

    def release(self) -> None:
        """The connection ended: its entries are one connection lighter, and may expire again."""
        for number, tracked in enumerate(self.counters):
            if tracked is not None:
                table, entry = tracked
                table.untrack(entry)
                self.counters[number] = None

    # --- fetches -------------------------------------------------------------------------------------

    def fetch(self, scope: str, value: str, number: Optional[int], table_name: Optional[str],
              conn: Any, index: Optional[int] = None) -> Any:
        """The value of a stick counter fetch (``samples.COUNTER_VALUES``; ``index``: the element of
        an array one reads); None when it has none (the counter is not tracked, the table does not
        store that data type), as HAProxy's fetch fails."""
        if scope == "table":
            table = self.tables.get(table_name or self.own or "")
            if table is None:
                return None
            return table.used if value == "cnt" else table.available
        data, how = COUNTER_VALUES[value]
        entry: Optional[Entry]
        if scope == "src":
            table = self.tables.get(table_name or self.own or "")
            if table is None:
                return None
            key = table.key_of(getattr(conn, "src", None), "ip")
            if key is None:
                return None
            entry = table.get(key) if how == "inc" else table.lookup(key)
        else:
            assert number is not None
            tracked = self.counters[number] if number < len(self.counters) else None  # sc_*(5)
            if how == "tracked":
                return tracked is not None
            if tracked is None:
                return None
            table, entry = tracked
            if table_name is not None:  # the same key, looked up in another table
                other = self.tables.get(table_name)
                if other is None:
                    return None
                table, entry = other, other.lookup(entry.key)
        if how == "trackers":
            return entry.use if entry is not None else 0
        if index is not None:  # an array's element, only in a table storing that array
            if not table.stores_element(data, index):
                return None
            data = element(data, index)
        if entry is None:
            return 0
        if how == "inc":
            return _increment(table, entry, int(data[3:]) if index is not None else int(data[-1]))
        if not table.stores(data):
            return None
        current = table.read(entry, data)
        if how == "clr":
            table.set(entry, data, 0)
        elif how == "kbytes":
            return current >> 10
        return current


def _increment(table: StickTable, entry: Entry, which: int) -> Optional[int]:
    """Count one in ``gpc<which>`` and its rate; the counter's new value (None if it is not stored)."""
    table.add(entry, f"gpc{which}")
    table.add(entry, f"gpc{which}_rate")
    table.touch(entry)
    return table.read(entry, f"gpc{which}") if table.stores(f"gpc{which}") else None
